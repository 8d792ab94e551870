"""Speed of the batched MCTS (xtra.search), with a synthetic model and with a real network.

(1) Tree only: a recurrent_fn that returns precomputed outputs (small latents: 8 floats, an
    LSTM state of 2 x 16 floats), so the time is the tree kernels plus the per-simulation driver
    work; reported as ms per search (wall clock, and the process's CPU time, which a machine
    shared with other jobs inflates less) and simulations/s = roots * simulations / seconds.
    Columns, run interleaved (one search of each in turn, ``--repeats`` rounds, medians):

    * ``search (torch)``: the public :func:`xtra.search.search` with CPU torch tensors;
    * ``search (numpy)``: the same with numpy arrays (a numpy model);
    * ``kernels``: the same compiled kernels driven by a plain loop over precomputed float64
      outputs, no model and no state pools: the floor for any driver;
    * ``C++ tree`` (with ``--cpp-tree PATH``): LightZero's EfficientZero tree (``ez_tree``
      extension module, e.g. from the ``lightzero`` wheel, loaded from PATH; not a dependency)
      driven by a minimal numpy loop over the same precomputed outputs, without state pools.

    Target: >= 1,000,000 simulations/s at 256 roots on 2 CPU cores, and at 8 roots at least the
    C++ tree's speed.
(2) With EfficientZeroNet (``paper()`` model, obs (12, 96, 96)): time per search and the
    fraction of it spent outside the network's recurrent inference (target < 10% at 256 roots).
(3) ``--cold-start``: seconds to import xtra.search and compile the kernels
    (``xtra.search.warm_up``) in a fresh process, with an empty kernel cache and again with
    the cache filled by the first run.

Prints tables and writes JSON (``--out``). ``--device cuda`` runs (1) and (2) on a GPU.

    python benchmarks/search_speed.py [--device cpu] [--roots 8 64 256 1536] [--skip-network]
        [--cpp-tree .../ez_tree.cpython-311-x86_64-linux-gnu.so] [--cold-start]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from xtra.config import paper
from xtra.search import search, search_kwargs
from xtra.search.mcts import draw_randomness
from xtra.search.tree import Steps, make_tree, prepare_roots


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PrecomputedModel:
    """recurrent_fn returning the same precomputed outputs for every call of a simulation."""

    def __init__(
        self, batch: int, num_actions: int, num_simulations: int, device: torch.device, seed=0
    ):
        g = torch.Generator().manual_seed(seed)
        self.outputs = [
            (
                torch.randn(batch, 8, generator=g).to(device),
                (
                    torch.randn(1, batch, 16, generator=g).to(device),
                    torch.randn(1, batch, 16, generator=g).to(device),
                ),
                torch.randn(batch, generator=g).to(device),
                torch.randn(batch, generator=g).to(device),
                torch.randn(batch, num_actions, generator=g).to(device),
            )
            for _ in range(num_simulations)
        ]
        self.calls = 0

    def __call__(self, latent, lstm_state, action_ids):
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return out


class NumpyModel(PrecomputedModel):
    """The same outputs as numpy arrays (a numpy recurrent_fn)."""

    def __init__(self, torch_model: PrecomputedModel):
        self.outputs = [
            (o[0].cpu().numpy(), (o[1][0].cpu().numpy(), o[1][1].cpu().numpy()))
            + tuple(x.cpu().numpy() for x in o[2:])
            for o in torch_model.outputs
        ]
        self.calls = 0


def kernels_only(outputs, legal, ids, root_logits, rng, kwargs, parallel) -> None:
    """The tree kernels driven by a plain loop over precomputed [B, 2 + P] float64 outputs."""
    sims = kwargs["num_simulations"]
    randomness = draw_randomness(
        rng,
        legal,
        num_simulations=sims,
        add_noise=True,
        dirichlet_alpha=kwargs["dirichlet_alpha"],
        tie_break=kwargs["tie_break"],
    )
    tree = make_tree(legal, ids, sims)
    prepare_roots(tree, root_logits, randomness.noise, kwargs["exploration_fraction"])
    keys = randomness.tie_keys
    steps = Steps(
        tree,
        c1=kwargs["c1"],
        c2=kwargs["c2"],
        discount=kwargs["discount"],
        value_delta_max=kwargs["value_delta_max"],
        lstm_horizon=kwargs["lstm_horizon"],
        tie_random=True,
        faithful_minmax_parent=kwargs["faithful_minmax_parent"],
        faithful_parent_q_leak=kwargs["faithful_parent_q_leak"],
        parallel=bool(parallel),
    )
    steps.simulate(keys[0])
    for sim in range(sims - 1):
        steps.expand_and_simulate(sim, outputs[sim], keys[sim + 1])
    steps.expand_and_backward(sims - 1, outputs[sims - 1])


def load_cpp_tree(path: str):
    """LightZero's ``ez_tree`` extension module from its .so file (no lzero import)."""
    loader = importlib.machinery.ExtensionFileLoader("ez_tree", path)
    spec = importlib.util.spec_from_file_location("ez_tree", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def cpp_search(ez, outputs, root_logits, rng, kwargs) -> None:
    """LightZero's EfficientZero tree over precomputed outputs (lists, as its bindings take):
    roots with noise, then per simulation batch_traverse and batch_backpropagate."""
    batch, num_actions = root_logits.shape
    roots = ez.Roots(batch, [list(range(num_actions)) for _ in range(batch)])
    noises = rng.dirichlet([kwargs["dirichlet_alpha"]] * num_actions, size=batch)
    roots.prepare(
        kwargs["exploration_fraction"],
        noises.astype(np.float32).tolist(),
        [0.0] * batch,
        root_logits.tolist(),
        [-1] * batch,
    )
    stats = ez.MinMaxStatsList(batch)
    stats.set_delta(kwargs["value_delta_max"])
    to_play = [-1] * batch
    c1, c2, discount = kwargs["c1"], int(kwargs["c2"]), kwargs["discount"]
    for sim, (value_prefix, value, logits, reset) in enumerate(outputs):
        results = ez.ResultsWrapper(num=batch)
        _, _, _, virtual_to_play = ez.batch_traverse(
            roots, c2, c1, discount, stats, results, to_play
        )
        results.get_search_len()
        ez.batch_backpropagate(
            sim + 1, discount, value_prefix, value, logits, stats, results, reset, virtual_to_play
        )
    roots.get_distributions()


def bench_tree(args, device: torch.device, parallel: bool | None) -> list[dict]:
    kwargs = search_kwargs(paper().search, paper().discount)
    kwargs["num_simulations"] = args.simulations
    ez = load_cpp_tree(args.cpp_tree) if args.cpp_tree else None
    rows = []
    for batch in args.roots:
        model = PrecomputedModel(batch, args.actions, args.simulations, device)
        numpy_model = NumpyModel(model)
        legal = np.ones((batch, args.actions), bool)
        ids = np.tile(np.arange(args.actions), (batch, 1))
        roots = (
            torch.randn(batch, 8, device=device),
            (torch.zeros(1, batch, 16, device=device), torch.zeros(1, batch, 16, device=device)),
            torch.randn(batch, args.actions, device=device),
            legal,
            ids,
        )
        numpy_roots = (
            roots[0].cpu().numpy(),
            tuple(s.cpu().numpy() for s in roots[1]),
            roots[2].cpu().numpy(),
            legal,
            ids,
        )
        outputs = [
            np.ascontiguousarray(
                torch.cat((o[2][:, None], o[3][:, None], o[4]), dim=1).double().cpu().numpy()
            )
            for o in model.outputs
        ]
        cpp_outputs = [
            (o[2].tolist(), o[3].tolist(), o[4].tolist(), [0] * batch) for o in model.outputs
        ]
        logits64 = roots[2].double().cpu().numpy()

        common = dict(parallel=parallel, **kwargs)
        variants = {
            "search (torch)": lambda rep, m=model, r=roots, k=common: search(
                m, *r, add_noise=True, rng=np.random.default_rng(rep), **k
            ),
            "kernels": lambda rep, o=outputs, r=roots, x=logits64, k=kwargs: kernels_only(
                o, r[3], r[4], x, np.random.default_rng(rep), k, parallel
            ),
        }
        if device.type == "cpu":
            variants["search (numpy)"] = lambda rep, m=numpy_model, r=numpy_roots, k=common: search(
                m, *r, add_noise=True, rng=np.random.default_rng(rep), **k
            )
            if ez is not None:
                variants["C++ tree"] = lambda rep, o=cpp_outputs, x=logits64: cpp_search(
                    ez, o, x, np.random.default_rng(rep), kwargs
                )
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu_times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(args.repeats + 1):  # the first round warms up (numba, allocator)
            for name, run in variants.items():
                _sync(device)
                start, cpu_start = time.perf_counter(), time.process_time()
                run(rep)
                _sync(device)
                if rep > 0:
                    times[name].append(time.perf_counter() - start)
                    cpu_times[name].append(time.process_time() - cpu_start)
        for name, ts in times.items():
            best, median = min(ts), statistics.median(ts)
            cpu_median = statistics.median(cpu_times[name])
            rows.append(
                dict(
                    variant=name,
                    roots=batch,
                    actions=args.actions,
                    simulations=args.simulations,
                    parallel=parallel,
                    seconds_best=best,
                    seconds_median=median,
                    cpu_seconds_median=cpu_median,
                    sims_per_s_best=batch * args.simulations / best,
                    sims_per_s_median=batch * args.simulations / median,
                )
            )
        print(f"  tree only, {batch} roots: done", flush=True)
    return rows


def cold_start(args) -> dict:
    """Import + warm_up in fresh processes: with an empty kernel cache, then with it filled."""
    code = (
        "import time; t = time.perf_counter(); import xtra.search as s; "
        f"i = time.perf_counter() - t; w = s.warm_up(parallel={args.cold_start_parallel}); "
        "import json; print(json.dumps(dict(import_s=i, **w, cache=s.kernel_cache_path())))"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XTRA_CACHE_DIR=cache)
        for name in ("empty cache", "cache filled"):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["process_s"] = time.perf_counter() - start
            out[name] = row
    return out


class TimedRecurrent:
    """Wraps model.recurrent_inference and accumulates the time spent inside it."""

    def __init__(self, model, device: torch.device):
        self.model, self.device, self.seconds = model, device, 0.0

    def __call__(self, latent, lstm_state, action_ids):
        _sync(self.device)
        start = time.perf_counter()
        out = self.model.recurrent_inference(latent, lstm_state, action_ids)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return out


def bench_network(args, device: torch.device) -> list[dict] | str:
    try:
        from xtra.model.networks import EfficientZeroNet
    except ImportError as e:  # the network is not there yet
        return f"skipped: {e}"
    cfg = paper()
    model = EfficientZeroNet(cfg.model, (12, 96, 96)).to(device).eval()
    kwargs = search_kwargs(cfg.search, cfg.discount)
    kwargs["num_simulations"] = args.simulations
    legal_ids = np.arange(args.actions)
    rows = []
    for batch in args.network_roots:
        obs = torch.rand(batch, 12, 96, 96, device=device)
        with torch.no_grad():
            root = model.initial_inference(obs)
        legal = np.ones((batch, args.actions), bool)
        ids = np.tile(legal_ids, (batch, 1))
        totals, inside = [], []
        for rep in range(args.network_repeats + 1):
            timed = TimedRecurrent(model, device)
            _sync(device)
            start = time.perf_counter()
            search(
                timed,
                root.latent,
                root.lstm_state,
                root.policy_logits,
                legal,
                ids,
                add_noise=True,
                rng=np.random.default_rng(rep),
                **kwargs,
            )
            _sync(device)
            if rep > 0:
                totals.append(time.perf_counter() - start)
                inside.append(timed.seconds)
        i = int(np.argmin(totals))
        rows.append(
            dict(
                roots=batch,
                simulations=args.simulations,
                seconds_per_search=totals[i],
                network_seconds=inside[i],
                outside_fraction=(totals[i] - inside[i]) / totals[i],
            )
        )
        print(f"  network, {batch} roots: {totals[i]:.3f} s/search", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--roots", type=int, nargs="+", default=[8, 64, 256, 1536])
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--parallel",
        choices=("auto", "on", "off", "both"),
        default="auto",
        help="numba threads over roots: auto (by batch size), on, off, or both for a comparison",
    )
    parser.add_argument("--cpp-tree", help="path of LightZero's ez_tree extension (.so)")
    parser.add_argument("--skip-tree", action="store_true")
    parser.add_argument("--network-roots", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--network-repeats", type=int, default=2)
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--cold-start", action="store_true")
    parser.add_argument(
        "--cold-start-parallel",
        choices=("None", "True", "False"),
        default="True",
        help="compile the multi-threaded kernel too in the cold-start runs",
    )
    parser.add_argument("--out", default="benchmarks/out/search_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_start = os.getloadavg()

    tree_rows: list[dict] = []
    if not args.skip_tree:
        modes = {"auto": [None], "on": [True], "off": [False], "both": [False, True]}
        for mode in modes[args.parallel]:
            tree_rows += bench_tree(args, device, mode)
        print(
            f"\n(1) tree only, precomputed model, {args.actions} actions, {args.simulations} sims,"
            f" medians of {args.repeats} interleaved rounds"
        )
        print(
            f"{'roots':>6} {'threads':>8} {'variant':>15} {'ms/search':>10} {'sims/s':>12}"
            f" {'(best)':>12} {'C++ / this':>11} {'CPU ms':>9} {'(C++ / this)':>13}"
        )
        cpp = {(r["roots"], r["parallel"]): r for r in tree_rows if r["variant"] == "C++ tree"}
        for r in tree_rows:
            threads = {None: "auto", True: "numba", False: "one"}[r["parallel"]]
            ref = cpp.get((r["roots"], r["parallel"]))
            ratio = f"{ref['seconds_median'] / r['seconds_median']:.2f}x" if ref else ""
            cpu_ratio = f"{ref['cpu_seconds_median'] / r['cpu_seconds_median']:.2f}x" if ref else ""
            print(
                f"{r['roots']:>6} {threads:>8} {r['variant']:>15} "
                f"{r['seconds_median'] * 1e3:>10.2f} {r['sims_per_s_median']:>12,.0f} "
                f"{r['sims_per_s_best']:>12,.0f} {ratio:>11} "
                f"{r['cpu_seconds_median'] * 1e3:>9.2f} {cpu_ratio:>13}"
            )

    net_rows: list[dict] | str = "skipped: --skip-network"
    if not args.skip_network:
        net_rows = bench_network(args, device)
        print(f"\n(2) EfficientZeroNet (paper model, obs 12x96x96), {args.simulations} sims")
        if isinstance(net_rows, str):
            print(f"  {net_rows}")
        else:
            print(f"{'roots':>6} {'s/search':>9} {'network s':>10} {'outside net':>12}")
            for r in net_rows:
                print(
                    f"{r['roots']:>6} {r['seconds_per_search']:>9.3f} "
                    f"{r['network_seconds']:>10.3f} {r['outside_fraction']:>11.1%}"
                )

    cold: dict | str = "skipped: no --cold-start"
    if args.cold_start:
        cold = cold_start(args)
        print("\n(3) cold start: import xtra.search + warm_up() in a fresh process")
        for name, row in cold.items():
            parts = ", ".join(
                f"{k} {row[k]:.2f} s"
                for k in ("import_s", "serial", "parallel", "process_s")
                if k in row
            )
            print(f"  {name}: {parts}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        device=str(device),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        platform=platform.platform(),
        torch=torch.__version__,
        load_average_start=load_start,
        load_average=os.getloadavg(),
    )
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    print(f"\nload average at start {load_start}, at end {meta['load_average']}")
    out.write_text(
        json.dumps(dict(meta=meta, tree=tree_rows, network=net_rows, cold_start=cold), indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
