"""Single-task EfficientZero, online (``xtra train``): the synchronous loop of spec A8.

::

    collect with uniform-random actions until replay.start_transitions are stored
    for step in 0 .. training_steps-1:
        self-play until env_steps >= max(step, start_transitions)   (~1 env step per training step)
        every 100 steps: acting net <- net;  every 200: target net <- snapshot, snapshot <- net
        batch   = PER sample (beta 0.4 -> 1)
        targets = reanalyse(batch, target net)        (values, value prefixes, search policies)
        update(net, batch, targets); write priorities back
        log / periodic evaluation / checkpoint
    final evaluation (full cap, final weights)

Every stateful piece (networks, optimiser, scaler, replay, environments, half-built trajectories,
all random generators) goes into each checkpoint, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xtra.atomic import atomic_write_text
from xtra.config import Config
from xtra.data.replay import ReplayBuffer, beta_at
from xtra.envs import make_env
from xtra.evaluate import EvalResult, evaluate
from xtra.learn.learner import Learner
from xtra.learn.planner import Planner
from xtra.learn.reanalyze import reanalyze, to_learn_batch
from xtra.learn.selfplay import SelfPlay
from xtra.model.networks import EfficientZeroNet
from xtra.rundir import MetricsWriter, RunDir, append_eval_rows, save_model, truncate_eval_rows


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    env_steps: int
    final: EvalResult | None  # None when the run stopped early (stop_after)


def eval_rows(
    result: EvalResult,
    *,
    method: str,
    seed: int,
    step: int,
    env_steps: int,
    kind: str,
    wall_s: float,
) -> list[dict]:
    return [
        {
            "game": result.game,
            "method": method,
            "seed": seed,
            "step": step,
            "env_steps": env_steps,
            "kind": kind,
            "episode": i,
            "score": float(s),
            "length": int(n),
            "wall_s": round(wall_s, 3),
        }
        for i, (s, n) in enumerate(zip(result.scores, result.lengths))
    ]


def train(
    game: str,
    cfg: Config,
    run_dir: str | Path,
    *,
    method: str = "EfficientZero",
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train EfficientZero on ``game`` in ``run_dir`` (resuming it if it holds a checkpoint).

    ``stop_after``: return right after that training step without a final evaluation, as if the
    process had been killed (tests of resumption). ``max_seconds``: a wall-clock budget (counted
    across resumptions); when it runs out, training ends early and the final evaluation runs.
    """
    device = resolve_device(cfg.device)
    o, r = cfg.optim, cfg.replay
    torch.manual_seed(cfg.seed)
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    run = RunDir(run_dir, cfg, stage="train", info={"game": env.game, "method": method})
    final_path = run.path / "final.json"
    if final_path.exists():
        env.close()
        summary = json.loads(final_path.read_text())
        print(
            f"{run.path} is finished: final score {summary['final']['mean']:.2f} (delete the directory to train again)"
        )
        return TrainResult(run.path, summary["steps"], summary["env_steps"], None)

    # ---- build every stateful piece
    model = EfficientZeroNet(cfg.model, env.obs_shape).to(device)
    target_model, snapshot_model, acting_model = (copy.deepcopy(model) for _ in range(3))
    learner = Learner(model, cfg, device)
    replay = ReplayBuffer.from_config(
        r,
        frame_shape=env.frame_shape,
        frame_stack=cfg.env.frame_stack,
        action_ids=env.legal_actions,
    )
    rng = np.random.default_rng(cfg.seed)
    selfplay = SelfPlay(env, replay, cfg, np.random.default_rng(cfg.seed + 1))
    step = 0
    elapsed_before = 0.0  # wall-clock seconds spent by earlier processes of this run

    loaded = run.load_checkpoint()
    if loaded is not None:
        state, ckpt = loaded
        step = state["step"]
        elapsed_before = state["elapsed"]
        model.load_state_dict(state["model"])
        target_model.load_state_dict(state["target_model"])
        snapshot_model.load_state_dict(state["snapshot_model"])
        acting_model.load_state_dict(state["acting_model"])
        learner.load_state_dict(state["learner"])
        rng.bit_generator.state = state["rng"]
        replay = ReplayBuffer.load(ckpt / "replay")
        selfplay.replay = replay
        selfplay.load_state_dict(state["selfplay"])
    metrics = MetricsWriter(run.path, resume_step=step if loaded else None)
    truncate_eval_rows(run.path, step if loaded else None)

    def checkpoint() -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "target_model": target_model.state_dict(),
            "snapshot_model": snapshot_model.state_dict(),
            "acting_model": acting_model.state_dict(),
            "learner": learner.state_dict(),
            "rng": rng.bit_generator.state,
            "selfplay": selfplay.state_dict(),
            "elapsed": elapsed(),
        }
        run.save_checkpoint(step, state, extra=lambda d: replay.save(d / "replay"))

    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    acting = Planner(acting_model, cfg, device, amp=learner.amp)
    target = Planner(target_model, cfg, device, amp=learner.amp)
    budget = o.env_steps

    # ---- warm-up: uniform random actions until training can start (A6.1)
    while len(replay) < r.start_transitions and selfplay.env_steps < budget:
        selfplay.step(None, 0)
    if len(replay) < o.batch_size:
        raise RuntimeError(
            f"only {len(replay)} transitions after the warm-up: raise optim.env_steps or lower optim.batch_size"
        )

    stopped_by_time = False
    bar = _progress(progress, o.training_steps, step, env.game)
    sums: dict[str, float] = defaultdict(float)
    timers: dict[str, float] = defaultdict(float)
    count = 0
    t_log = time.perf_counter()
    try:
        while step < o.training_steps:
            # Self-play paced to about one environment step per training step (A8).
            t0 = time.perf_counter()
            if selfplay.env_steps < budget:
                while selfplay.env_steps < min(max(step, r.start_transitions), budget):
                    selfplay.step(acting, step)
                if selfplay.env_steps >= budget:
                    selfplay.flush()
            t1 = time.perf_counter()
            if step % o.selfplay_update_interval == 0:
                acting_model.load_state_dict(model.state_dict())
            if step % o.target_update_interval == 0:  # target lags 200-400 steps (A6.5)
                target_model.load_state_dict(snapshot_model.state_dict())
                snapshot_model.load_state_dict(model.state_dict())

            beta = beta_at(
                step, beta_start=r.beta_start, beta_end=r.beta_end, total_steps=o.training_steps
            )
            sample = replay.sample(
                o.batch_size,
                unroll_steps=r.unroll_steps,
                td_steps=r.td_steps,
                auto_td_steps=r.auto_td_steps,
                rng=rng,
                beta=beta,
            )
            t2 = time.perf_counter()
            targets = reanalyze(sample, replay, target, cfg, rng)
            t3 = time.perf_counter()
            result = learner.update(
                to_learn_batch(sample, targets, env.legal_actions, cfg, device), step
            )
            replay.update_priorities(sample.indices, result.priorities.numpy())
            t4 = time.perf_counter()
            step += 1

            for k, v in result.metrics.items():
                sums[k] += v
            for k, v in (
                ("selfplay", t1 - t0),
                ("sample", t2 - t1),
                ("reanalyze", t3 - t2),
                ("update", t4 - t3),
            ):
                timers[k] += v
            count += 1
            if step % o.log_interval == 0 or step == o.training_steps:
                now = time.perf_counter()
                episodes = selfplay.pop_stats()
                row = {k: v / count for k, v in sums.items()}
                row.update({f"time/{k}": v / count for k, v in timers.items()})
                row.update(
                    {
                        "env_steps": selfplay.env_steps,
                        "replay/size": len(replay),
                        "replay/beta": beta,
                        "perf/steps_per_s": count / max(now - t_log, 1e-9),
                        "perf/wall_s": elapsed(),
                    }
                )
                if episodes.returns:
                    row["selfplay/return"] = float(np.mean(episodes.returns))
                    row["selfplay/length"] = float(np.mean(episodes.lengths))
                    row["selfplay/episodes"] = len(episodes.returns)
                metrics.write(step, row)
                bar.set_postfix(
                    env=selfplay.env_steps,
                    loss=f"{row['loss/total']:.3f}",
                    ret=f"{row.get('selfplay/return', float('nan')):.1f}",
                )
                sums.clear()
                timers.clear()
                count, t_log = 0, now
            bar.update(1)

            if step % cfg.eval.interval == 0 and step < o.training_steps:
                res = evaluate(
                    model,
                    game,
                    cfg,
                    max_steps=cfg.eval.periodic_max_steps,
                    device=device,
                    amp=learner.amp,
                )
                append_eval_rows(
                    run.path,
                    eval_rows(
                        res,
                        method=method,
                        seed=cfg.seed,
                        step=step,
                        env_steps=selfplay.env_steps,
                        kind="periodic",
                        wall_s=elapsed(),
                    ),
                )
                metrics.write(
                    step,
                    {
                        "eval/return": res.mean,
                        "eval/return_std": res.std,
                        "env_steps": selfplay.env_steps,
                    },
                )
            if step % o.checkpoint_interval == 0 or step == o.training_steps:
                checkpoint()
            if stop_after is not None and step >= stop_after:
                return TrainResult(run.path, step, selfplay.env_steps, None)
            if max_seconds is not None and elapsed() >= max_seconds:
                stopped_by_time = True
                checkpoint()
                break
    finally:
        bar.close()
        metrics.close()
        env.close()

    # ---- final evaluation with the final weights (A9; not the best checkpoint, issue #22)
    final = evaluate(
        model, game, cfg, max_steps=cfg.eval.final_max_steps, device=device, amp=learner.amp
    )
    append_eval_rows(
        run.path,
        eval_rows(
            final,
            method=method,
            seed=cfg.seed,
            step=step,
            env_steps=selfplay.env_steps,
            kind="final",
            wall_s=elapsed(),
        ),
    )
    save_model(
        run.path / "model.pt",
        model,
        cfg,
        games=[env.game],
        obs_shape=env.obs_shape,
        stage="train",
        step=step,
    )
    summary = {
        "game": env.game,
        "method": method,
        "seed": cfg.seed,
        "steps": step,
        "env_steps": selfplay.env_steps,
        "wall_s": elapsed(),
        "stopped_by_time": stopped_by_time,
        "final": final.summary(),
    }
    atomic_write_text(final_path, json.dumps(summary, indent=2) + "\n")
    return TrainResult(run.path, step, selfplay.env_steps, final)


def _progress(enabled: bool, total: int, initial: int, game: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"train {game}",
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        smoothing=0.05,
    )
