"""Speed of the batched MCTS (xtra.search), with a synthetic model and with a real network.

(1) Tree only: a recurrent_fn that returns precomputed outputs (small latents), so the time is
    the tree kernels plus the per-simulation driver work; reported as simulations/s =
    roots * simulations / seconds per search. Target: >= 1,000,000 at 256 roots on 2 CPU cores.
(2) With EfficientZeroNet (``paper()`` model, obs (12, 96, 96)): time per search and the
    fraction of it spent outside the network's recurrent inference (target < 10% at 256 roots).

Prints a table and writes JSON (``--out``). ``--device cuda`` runs the same on a GPU.

    python benchmarks/search_speed.py [--device cpu] [--roots 8 64 256 1536] [--skip-network]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from xtra.config import paper
from xtra.search import search, search_kwargs


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


def bench_tree(args, device: torch.device, parallel: bool | None) -> list[dict]:
    kwargs = search_kwargs(paper().search, paper().discount)
    kwargs["num_simulations"] = args.simulations
    rows = []
    for batch in args.roots:
        model = PrecomputedModel(batch, args.actions, args.simulations, device)
        legal = np.ones((batch, args.actions), bool)
        ids = np.tile(np.arange(args.actions), (batch, 1))
        roots = (
            torch.randn(batch, 8, device=device),
            (torch.zeros(1, batch, 16, device=device), torch.zeros(1, batch, 16, device=device)),
            torch.randn(batch, args.actions, device=device),
            legal,
            ids,
        )
        times = []
        for rep in range(args.repeats + 1):  # the first run warms up (numba, allocator)
            _sync(device)
            start = time.perf_counter()
            search(
                model,
                *roots,
                add_noise=True,
                rng=np.random.default_rng(rep),
                parallel=parallel,
                **kwargs,
            )
            _sync(device)
            if rep > 0:
                times.append(time.perf_counter() - start)
        best, median = min(times), statistics.median(times)
        rows.append(
            dict(
                roots=batch,
                actions=args.actions,
                simulations=args.simulations,
                parallel=parallel,
                seconds_best=best,
                seconds_median=median,
                sims_per_s_best=batch * args.simulations / best,
                sims_per_s_median=batch * args.simulations / median,
            )
        )
    return rows


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
    parser.add_argument("--network-roots", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--network-repeats", type=int, default=2)
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--out", default="benchmarks/out/search_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)

    modes = {"auto": [None], "on": [True], "off": [False], "both": [False, True]}[args.parallel]
    tree_rows = [row for mode in modes for row in bench_tree(args, device, mode)]
    print(f"\n(1) tree only, precomputed model, {args.actions} actions, {args.simulations} sims")
    print(f"{'roots':>6} {'threads':>8} {'ms/search':>10} {'sims/s (best)':>14} {'(median)':>12}")
    for r in tree_rows:
        threads = {None: "auto", True: "numba", False: "one"}[r["parallel"]]
        print(
            f"{r['roots']:>6} {threads:>8} {r['seconds_best'] * 1e3:>10.2f} "
            f"{r['sims_per_s_best']:>14,.0f} {r['sims_per_s_median']:>12,.0f}"
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

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        device=str(device),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        platform=platform.platform(),
        torch=torch.__version__,
        load_average=os.getloadavg(),
    )
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    out.write_text(json.dumps(dict(meta=meta, tree=tree_rows, network=net_rows), indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
