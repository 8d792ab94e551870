"""Learner and self-play throughput of `xtra train`, split by phase.

For a preset and a game: fill the replay with random-policy data, then time full training
iterations (self-play at 1:1 pacing, PER sampling, reanalysis with the target network, the SGD
update). Prints a table and writes JSON. With a GPU (`--device cuda`) it also projects the wall
clock of a full run (schedule.training_steps learner steps).

    python benchmarks/train_speed.py --preset cpu --game minatar/breakout
    python benchmarks/train_speed.py --preset paper --game Breakout --steps 3
    python benchmarks/train_speed.py --preset cpu --threads 1 --steps 30 --phases

``--phases`` splits the step further by timing the library's functions where they are called
(exclusive times: a wrapped function's time excludes the wrapped functions it calls):
reanalysis into the initial inference (h and f on the search roots and the bootstrap states),
the search's recurrent inference (g and f) and tree (the rest of the search), and the targets
(gathering the bootstrap frames, n-step values, value prefixes, policies); the update into the batch conversion, forward (the unroll and its losses), backward,
gradient clipping and the optimiser step. On CPU only (no synchronisation inside the phases).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from xtra.act.selfplay import SelfPlay
from xtra.config import make_config
from xtra.data.replay import ReplayBuffer
from xtra.device import resolve_device
from xtra.envs import make_env
from xtra.learn.loop import Source, build_networks, make_planner, reanalyze_targets, train_step


class PhaseTimer:
    """Exclusive wall time of wrapped functions, by phase name (seconds, summed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[float] = []  # time spent in wrapped callees of each open call
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, phase: str, nested_only: bool = False) -> None:
        """Time ``owner.attr`` as ``phase``; with ``nested_only`` only inside another wrapped call
        (the planner's methods: inside the reanalysis, not in self-play)."""
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            if nested_only and not self._stack:
                return fn(*args, **kwargs)
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.perf_counter() - t0
                inner = self._stack.pop()
                self.seconds[phase] = self.seconds.get(phase, 0.0) + total - inner
                if self._stack:
                    self._stack[-1] += total

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()

    def reset(self) -> None:
        self.seconds = {}


def phase_timer() -> PhaseTimer:
    """Timers on the functions a training step calls (module docstring, ``--phases``)."""
    import xtra.act.planner as planner_mod
    import xtra.learn.learner as learner_mod
    import xtra.learn.loop as loop_mod

    t = PhaseTimer()
    # Each function is wrapped where its caller looks it up.
    t.wrap(loop_mod, "reanalyze", "reanalyze/targets")
    t.wrap(planner_mod.Planner, "root_inference", "reanalyze/initial_inference", nested_only=True)
    t.wrap(planner_mod.Planner, "recurrent", "reanalyze/recurrent_inference", nested_only=True)
    t.wrap(planner_mod, "search", "reanalyze/tree", nested_only=True)
    t.wrap(loop_mod, "to_learn_batch", "update/to_batch")
    t.wrap(learner_mod, "unroll_losses", "update/forward")
    t.wrap(torch.Tensor, "backward", "update/backward")
    t.wrap(torch.nn.utils, "clip_grad_norm_", "update/clip")
    t.wrap(torch.optim.SGD, "step", "update/optimizer")
    t.wrap(torch.optim.Adam, "step", "update/optimizer")
    return t


def measure(
    preset: str,
    game: str,
    steps: int,
    warmup: int,
    device: str,
    overrides: list[str],
    phases: bool = False,
) -> dict:
    cfg = make_config(preset, overrides=[f"device={device}", *overrides])
    dev = resolve_device(cfg.device)
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=0, mode="train")
    replay = ReplayBuffer.from_config(
        cfg.replay,
        frame_shape=env.frame_shape,
        frame_stack=cfg.env.frame_stack,
        action_ids=env.legal_actions,
    )
    selfplay = SelfPlay(env, np.random.default_rng(0), frame_stack=cfg.env.frame_stack)

    def store(pieces) -> None:
        for piece in pieces:
            replay.add(piece.trajectory, sample_limit=piece.sample_limit)

    while len(replay) < max(cfg.optim.batch_size * 2, 500):
        store(selfplay.step(None))
    nets, learner = build_networks(cfg, env.obs_shape, dev)
    acting = make_planner(copy.deepcopy(nets.model), cfg, dev, learner.amp)
    target = make_planner(nets.target, cfg, dev, learner.amp)
    source = Source(
        game=env.game,
        replay=replay,
        make_targets=reanalyze_targets(target, cfg),
        batch_size=lambda step: cfg.optim.batch_size,
        auto_td_steps=cfg.targets.auto_td_steps,
        offline=False,
    )
    rng = np.random.default_rng(1)
    r = cfg.targets
    times: dict[str, list[float]] = {"selfplay": [], "sample": [], "reanalyze": [], "update": []}
    timer = phase_timer() if phases else None
    detail: dict[str, float] = {}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for i in range(warmup + steps):
        if timer is not None:
            timer.reset()
        sync()
        t0 = time.perf_counter()
        store(selfplay.step(acting))  # one batched env step = num_envs agent steps
        sync()
        t1 = time.perf_counter()
        out = train_step(
            2000 + i,
            [source],
            learner,
            rng,
            beta=1.0,
            unroll_steps=r.unroll_steps,
            td_steps=r.td_steps,
            policy_size=cfg.model.policy_size,
        )
        sync()
        if i >= warmup:
            times["selfplay"].append((t1 - t0) / cfg.env.num_envs)  # per agent step
            for k, v in out.seconds.items():
                times[k].append(v)
            if timer is not None:
                for k, v in timer.seconds.items():
                    detail[k] = detail.get(k, 0.0) + v / steps
    if timer is not None:
        timer.restore()
    env.close()
    mean = {k: float(np.mean(v)) for k, v in times.items()}
    # At 1:1 pacing one learner step comes with one agent step.
    step_s = sum(mean.values())
    return {
        "preset": preset,
        "game": game,
        "device": str(dev),
        "batch_size": cfg.optim.batch_size,
        "num_simulations": cfg.search.num_simulations,
        "reanalyze_ratio": cfg.targets.reanalyze_ratio,
        "seconds_per_phase": mean,
        "learner_steps_per_s": 1.0 / step_s,
        "env_steps_per_s_selfplay_only": 1.0 / mean["selfplay"],
        "projected_hours_full_run": cfg.schedule.training_steps * step_s / 3600,
        "training_steps": cfg.schedule.training_steps,
        "measured_steps": steps,
        "seconds_per_subphase": detail,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", action="append", help="preset(s) to measure (default: cpu)")
    p.add_argument(
        "--game",
        default=None,
        help="game (default minatar/breakout for cpu/tiny, Breakout for paper)",
    )
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--phases", action="store_true", help="split reanalysis and update further")
    p.add_argument("--out", default="benchmarks/out/train_speed.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for preset in args.preset or ["cpu"]:
        game = args.game or ("Breakout" if preset == "paper" else "minatar/breakout")
        rows.append(
            measure(preset, game, args.steps, args.warmup, args.device, args.overrides, args.phases)
        )
    print(
        f"{'preset':7s} {'game':18s} {'device':6s} {'selfplay/agent step':>20s} {'sample':>8s} "
        f"{'reanalyze':>10s} {'update':>8s} {'learner steps/s':>16s} {'full run (h)':>13s}"
    )
    for r in rows:
        s = r["seconds_per_phase"]
        print(
            f"{r['preset']:7s} {r['game']:18s} {r['device']:6s} {s['selfplay']:20.4f} {s['sample']:8.4f} "
            f"{s['reanalyze']:10.4f} {s['update']:8.4f} {r['learner_steps_per_s']:16.3f} {r['projected_hours_full_run']:13.2f}"
        )
        for name, sec in sorted(r["seconds_per_subphase"].items()):
            print(f"    {name:32s} {sec:8.4f} s per learner step")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": __import__("os").cpu_count(),
    }
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
