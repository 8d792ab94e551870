"""The training loop, written once, and its online wiring ``xtra train`` (spec A8).

Every stage (online EfficientZero, offline teachers, multi-game distillation, ...) is one call of
:func:`run_loop` with its own *sources* -- replay buffers with a share of the batch and a target
maker -- and, for the online stage only, a *collector* that acts in the environment::

    collector.warm_up()                                  (online: random actions until replay.start_transitions)
    for step in 0 .. training_steps-1:
        collector.advance(step)                          (online: self-play, ~1 env step per training step)
        every 200 steps: target net <- snapshot, snapshot <- net
        for each source i:  sample_i  = PER sample of B_i windows (beta 0.4 -> 1)
                            targets_i = source.make_targets(sample_i, rng)   (reanalyse / teacher / BC)
        update(net, concat_i(sample_i, targets_i)); write priorities back to each source
        log (per-source losses when there are several) / periodic evaluation / checkpoint
    final evaluation on every evaluation game (full cap, final weights)

Every stateful piece (networks, optimiser, scaler, replay or the priorities of fixed datasets,
environments, half-built trajectories, all random generators) goes into each checkpoint, so an
interrupted run resumes exactly.
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from xtra.atomic import atomic_write_text
from xtra.config import Config
from xtra.data.replay import ReplayBuffer, SampledBatch, beta_at
from xtra.envs import make_env
from xtra.evaluate import EvalResult, evaluate
from xtra.learn.learner import LearnBatch, Learner
from xtra.learn.loss import Targets
from xtra.learn.planner import Planner
from xtra.learn.reanalyze import reanalyze, to_learn_batch
from xtra.learn.selfplay import SelfPlay
from xtra.model.networks import EfficientZeroNet
from xtra.rundir import MetricsWriter, RunDir, append_eval_rows, save_model, truncate_eval_rows

TargetMaker = Callable[[SampledBatch, ReplayBuffer, np.random.Generator], Targets]
"""(sampled batch, its replay, rng) -> training targets on the learner's device."""

EvalFn = Callable[[torch.nn.Module, str, int], EvalResult]
"""(model, game, max_steps) -> evaluation result (search policy by default)."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    env_steps: int
    final: EvalResult | None  # first evaluation game; None when the run stopped early
    finals: dict[str, EvalResult] = field(default_factory=dict)  # every evaluation game


@dataclass
class Source:
    """One stream of training samples: a replay buffer of one game and how its targets are made.

    ``batch_size(step)`` gives this source's share of the step's batch. ``fixed`` sources are
    offline datasets: only their priorities go into checkpoints; the others (online replay) are
    saved whole. ``policy_mask``: softmax of the policy loss over the game's legal ids (True) or
    over all 18 outputs as XTRA's multi-game code (False, spec B2).
    """

    game: str
    replay: ReplayBuffer
    make_targets: TargetMaker
    batch_size: Callable[[int], int]
    auto_td_steps: int | None
    fixed: bool
    policy_mask: bool = True


class Collector(Protocol):
    """What the loop needs from an online data collector (self-play)."""

    env_steps: int

    def warm_up(self) -> None: ...
    def advance(self, step: int) -> None: ...
    def log_row(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any], sources: list[Source]) -> None: ...


class Weighting(Protocol):
    """Optional per-step task weights of the sources (finetuning, Eq. 1; spec B7).

    ``before_update`` runs just before each update on the concatenated batch (PER weights only)
    and returns one weight per source ``[G]`` (or None for no change); the loop applies it with
    :func:`apply_group_weights`. Its state goes into every checkpoint.
    """

    def before_update(
        self, step: int, batch: LearnBatch, learner: Learner
    ) -> torch.Tensor | None: ...
    def metrics(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def apply_group_weights(batch: LearnBatch, weights: torch.Tensor, mode: str) -> None:
    """Per-source weights ``[G]`` into ``batch`` (decision 3): ``eq1`` sets
    ``batch.group_weights`` (Eq. 1's eta_g times each source's mean); ``mean`` multiplies each
    sample's PER weight by its source's weight, as XTRA's code does (B7.3)."""
    if batch.groups is None:
        return
    weights = weights.to(batch.weights.device, batch.weights.dtype)
    if mode == "eq1":
        batch.group_weights = weights
    else:
        batch.weights = batch.weights * weights[batch.groups]


@dataclass
class Nets:
    """The online network, its lagged target copies and the learner (spec A6.5)."""

    model: EfficientZeroNet
    target_model: EfficientZeroNet
    snapshot_model: EfficientZeroNet
    learner: Learner

    @classmethod
    def build(cls, cfg: Config, obs_shape: tuple[int, int, int], device: torch.device) -> Nets:
        torch.manual_seed(cfg.seed)
        model = EfficientZeroNet(cfg.model, obs_shape).to(device)
        target, snapshot = copy.deepcopy(model), copy.deepcopy(model)
        return cls(model, target, snapshot, Learner(model, cfg, device))

    def target_planner(self, cfg: Config) -> Planner:
        return Planner(self.target_model, cfg, self.learner.device, amp=self.learner.amp)


def split_batch(total: int, num_sources: int, step: int) -> list[int]:
    """Uniform task sampling: ``total`` samples split evenly over ``num_sources`` (decision 3).

    Each source gets ``total // m``; the ``total % m`` left over go one each to consecutive
    sources starting at ``step % m``, so sub-batches differ by at most one sample within a step
    and are exactly equal summed over any ``m`` consecutive steps.
    """
    base, extra = divmod(total, num_sources)
    return [base + int((i - step) % num_sources < extra) for i in range(num_sources)]


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


def search_eval_fn(cfg: Config, device: torch.device, amp: bool) -> EvalFn:
    """The evaluation protocol of spec A9 (search, no noise) as an :data:`EvalFn`."""

    def fn(model: torch.nn.Module, game: str, max_steps: int) -> EvalResult:
        return evaluate(model, game, cfg, max_steps=max_steps, device=device, amp=amp)

    return fn


def reanalyze_targets(planner: Planner, cfg: Config, **switches: Any) -> TargetMaker:
    """A target maker that reanalyses with ``planner`` (spec A6.4; switches of :func:`reanalyze`)."""

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        return reanalyze(sample, replay, planner, cfg, rng, **switches)

    return make


# --------------------------------------------------------------------------- online wiring


class SelfPlayCollector:
    """Online data for :func:`run_loop`: paced self-play with a periodically refreshed acting net."""

    def __init__(self, env, replay: ReplayBuffer, nets: Nets, cfg: Config):
        self.cfg = cfg
        self.nets = nets
        self.acting_model = copy.deepcopy(nets.model)
        self.acting = Planner(self.acting_model, cfg, nets.learner.device, amp=nets.learner.amp)
        self.selfplay = SelfPlay(env, replay, cfg, np.random.default_rng(cfg.seed + 1))

    @property
    def env_steps(self) -> int:
        return self.selfplay.env_steps

    def warm_up(self) -> None:
        """Uniform random actions until training can start (A6.1)."""
        r, o, sp = self.cfg.replay, self.cfg.optim, self.selfplay
        while len(sp.replay) < r.start_transitions and sp.env_steps < o.env_steps:
            sp.step(None, 0)
        if len(sp.replay) < o.batch_size:
            raise RuntimeError(
                f"only {len(sp.replay)} transitions after the warm-up: raise optim.env_steps or lower optim.batch_size"
            )

    def advance(self, step: int) -> None:
        """Self-play paced to about one environment step per training step (A8)."""
        r, o, sp = self.cfg.replay, self.cfg.optim, self.selfplay
        if sp.env_steps < o.env_steps:
            while sp.env_steps < min(max(step, r.start_transitions), o.env_steps):
                sp.step(self.acting, step)
            if sp.env_steps >= o.env_steps:
                sp.flush()
        if step % o.selfplay_update_interval == 0:
            self.acting_model.load_state_dict(self.nets.model.state_dict())

    def log_row(self) -> dict[str, float]:
        episodes = self.selfplay.pop_stats()
        row: dict[str, float] = {}
        if episodes.returns:
            row["selfplay/return"] = float(np.mean(episodes.returns))
            row["selfplay/length"] = float(np.mean(episodes.lengths))
            row["selfplay/episodes"] = len(episodes.returns)
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "acting_model": self.acting_model.state_dict(),
            "selfplay": self.selfplay.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], sources: list[Source]) -> None:
        self.acting_model.load_state_dict(state["acting_model"])
        self.selfplay.replay = sources[0].replay
        self.selfplay.load_state_dict(state["selfplay"])


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
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    run = RunDir(run_dir, cfg, stage="train", info={"game": env.game, "method": method})
    done = finished_result(run)
    if done is not None:
        env.close()
        return done
    nets = Nets.build(cfg, env.obs_shape, device)
    replay = ReplayBuffer.from_config(
        cfg.replay,
        frame_shape=env.frame_shape,
        frame_stack=cfg.env.frame_stack,
        action_ids=env.legal_actions,
    )
    source = Source(
        game=env.game,
        replay=replay,
        make_targets=reanalyze_targets(nets.target_planner(cfg), cfg),
        batch_size=lambda step: cfg.optim.batch_size,
        auto_td_steps=cfg.replay.auto_td_steps,
        fixed=False,
    )
    collector = SelfPlayCollector(env, replay, nets, cfg)
    try:
        return run_loop(
            run,
            cfg,
            nets,
            [source],
            eval_games=[game],
            eval_fn=search_eval_fn(cfg, device, nets.learner.amp),
            method=method,
            obs_shape=env.obs_shape,
            collector=collector,
            progress=progress,
            stop_after=stop_after,
            max_seconds=max_seconds,
        )
    finally:
        env.close()


# --------------------------------------------------------------------------- the loop


def finished_result(run: RunDir) -> TrainResult | None:
    """The result of a run that already finished (prints it), or None."""
    final_path = run.path / "final.json"
    if not final_path.exists():
        return None
    summary = json.loads(final_path.read_text())
    summary.setdefault("finals", {summary["game"]: summary["final"]})
    means = ", ".join(f"{g} {s['mean']:.2f}" for g, s in summary["finals"].items())
    print(f"{run.path} is finished: final score {means} (delete the directory to train again)")
    return TrainResult(run.path, summary["steps"], summary["env_steps"], None)


def concat_batches(batches: Sequence[LearnBatch]) -> LearnBatch:
    """One LearnBatch from per-source ones; ``groups`` = source index (per-source metrics, Eq. 1)."""
    if len(batches) == 1:
        return batches[0]
    masks = [b.policy_mask for b in batches]
    if all(m is None for m in masks):
        policy_mask = None
    else:
        policy_mask = torch.cat(
            [
                m if m is not None else torch.ones_like(b.targets.policy[:, 0], dtype=torch.bool)
                for b, m in zip(batches, masks)
            ]
        )
    device = batches[0].obs.device
    return LearnBatch(
        obs=torch.cat([b.obs for b in batches]),
        actions=torch.cat([b.actions for b in batches]),
        mask=torch.cat([b.mask for b in batches]),
        targets=Targets(
            value=torch.cat([b.targets.value for b in batches]),
            value_prefix=torch.cat([b.targets.value_prefix for b in batches]),
            policy=torch.cat([b.targets.policy for b in batches]),
        ),
        weights=torch.cat([b.weights for b in batches]),
        policy_mask=policy_mask,
        groups=torch.cat(
            [torch.full((len(b.weights),), i, dtype=torch.long) for i, b in enumerate(batches)]
        ).to(device),
    )


def per_source_metrics(terms, groups: torch.Tensor, games: list[str]) -> dict[str, float]:
    """``loss/<game>/<term>``: the mean per-sample loss of each source's samples."""
    out: dict[str, float] = {}
    for i, game in enumerate(games):
        sel = groups == i
        if not bool(sel.any()):
            continue
        for name in ("total", "value", "policy", "value_prefix", "consistency"):
            out[f"loss/{game}/{name}"] = float(getattr(terms, name)[sel].float().mean().item())
    return out


def run_loop(
    run: RunDir,
    cfg: Config,
    nets: Nets,
    sources: list[Source],
    *,
    eval_games: Sequence[str],
    eval_fn: EvalFn,
    method: str,
    obs_shape: tuple[int, int, int],
    collector: Collector | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
    weighting: Weighting | None = None,
) -> TrainResult:
    """Train ``nets`` on ``sources`` in ``run`` (resuming its checkpoint): the one loop of all
    stages. See the module docstring for the order of operations. ``weighting``: optional task
    weights of the sources (finetuning), applied to each step's batch before the update."""
    o, r = cfg.optim, cfg.replay
    model, learner = nets.model, nets.learner
    games = [s.game for s in sources]
    rng = np.random.default_rng(cfg.seed)
    step = 0
    elapsed_before = 0.0  # wall-clock seconds spent by earlier processes of this run

    loaded = run.load_checkpoint()
    if loaded is not None:
        state, ckpt = loaded
        step = state["step"]
        elapsed_before = state["elapsed"]
        model.load_state_dict(state["model"])
        nets.target_model.load_state_dict(state["target_model"])
        nets.snapshot_model.load_state_dict(state["snapshot_model"])
        learner.load_state_dict(state["learner"])
        rng.bit_generator.state = state["rng"]
        for i, s in enumerate(sources):
            if s.fixed:
                p = state["priorities"][i]
                s.replay.update_priorities(_live_indices(s.replay), p)
            else:
                s.replay = ReplayBuffer.load(ckpt / _replay_name(i))
        if collector is not None:
            collector.load_state_dict(state, sources)
        if weighting is not None:
            weighting.load_state_dict(state["weighting"])
    metrics = MetricsWriter(run.path, resume_step=step if loaded else None)
    truncate_eval_rows(run.path, step if loaded else None)

    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    def env_steps() -> int:
        return collector.env_steps if collector is not None else 0

    def evaluate_all(kind: str, max_steps: int) -> dict[str, EvalResult]:
        """Evaluate on every game and append the episodes to RUN/eval.csv."""
        results = {}
        for game in eval_games:
            res = results[game] = eval_fn(model, game, max_steps)
            rows = eval_rows(
                res,
                method=method,
                seed=cfg.seed,
                step=step,
                env_steps=env_steps(),
                kind=kind,
                wall_s=elapsed(),
            )
            append_eval_rows(run.path, rows)
        return {res.game: res for res in results.values()}

    def checkpoint() -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "target_model": nets.target_model.state_dict(),
            "snapshot_model": nets.snapshot_model.state_dict(),
            "learner": learner.state_dict(),
            "rng": rng.bit_generator.state,
            "elapsed": elapsed(),
            "priorities": {
                i: s.replay.priorities(_live_indices(s.replay))
                for i, s in enumerate(sources)
                if s.fixed
            },
        }
        if collector is not None:
            state.update(collector.state_dict())
        if weighting is not None:
            state["weighting"] = weighting.state_dict()

        def save_replays(d: Path) -> None:
            for i, s in enumerate(sources):
                if not s.fixed:
                    s.replay.save(d / _replay_name(i))

        run.save_checkpoint(step, state, extra=save_replays)

    if collector is not None:
        collector.warm_up()

    stopped_by_time = False
    bar = _progress(progress, o.training_steps, step, f"{run.stage} {'+'.join(games)}")
    sums: dict[str, float] = defaultdict(float)
    timers: dict[str, float] = defaultdict(float)
    count = 0
    t_log = time.perf_counter()
    try:
        while step < o.training_steps:
            t0 = time.perf_counter()
            if collector is not None:
                collector.advance(step)
            t1 = time.perf_counter()
            if step % o.target_update_interval == 0:  # target lags 200-400 steps (A6.5)
                nets.target_model.load_state_dict(nets.snapshot_model.state_dict())
                nets.snapshot_model.load_state_dict(model.state_dict())

            beta = beta_at(
                step, beta_start=r.beta_start, beta_end=r.beta_end, total_steps=o.training_steps
            )
            t_sample = t_targets = 0.0
            samples, batches = [], []
            for s in sources:
                ta = time.perf_counter()
                sample = s.replay.sample(
                    s.batch_size(step),
                    unroll_steps=r.unroll_steps,
                    td_steps=r.td_steps,
                    auto_td_steps=s.auto_td_steps,
                    rng=rng,
                    beta=beta,
                )
                tb = time.perf_counter()
                targets = s.make_targets(sample, s.replay, rng)
                t_sample += tb - ta
                t_targets += time.perf_counter() - tb
                lb = to_learn_batch(sample, targets, s.replay.action_ids, cfg, learner.device)
                if not s.policy_mask:
                    lb.policy_mask = None
                samples.append(sample)
                batches.append(lb)
            t3 = time.perf_counter()
            batch = concat_batches(batches)
            if weighting is not None:
                group_weights = weighting.before_update(step, batch, learner)
                if group_weights is not None:
                    apply_group_weights(batch, group_weights, cfg.transfer.loss_combination)
            result = learner.update(batch, step)
            priorities = result.priorities.numpy()
            start = 0
            for s, sample in zip(sources, samples):
                s.replay.update_priorities(sample.indices, priorities[start : start + len(sample)])
                start += len(sample)
            t4 = time.perf_counter()
            step += 1

            for k, v in result.metrics.items():
                sums[k] += v
            if len(sources) > 1 and result.terms is not None:
                for k, v in per_source_metrics(result.terms, batch.groups, games).items():
                    sums[k] += v
            for k, v in (
                ("selfplay", t1 - t0),
                ("sample", t_sample),
                ("reanalyze", t_targets),
                ("update", t4 - t3),
            ):
                timers[k] += v
            count += 1
            if step % o.log_interval == 0 or step == o.training_steps:
                now = time.perf_counter()
                row = {k: v / count for k, v in sums.items()}
                row.update({f"time/{k}": v / count for k, v in timers.items()})
                row.update(
                    {
                        "env_steps": env_steps(),
                        "replay/size": sum(len(s.replay) for s in sources),
                        "replay/beta": beta,
                        "perf/steps_per_s": count / max(now - t_log, 1e-9),
                        "perf/wall_s": elapsed(),
                    }
                )
                if collector is not None:
                    row.update(collector.log_row())
                if weighting is not None:
                    row.update(weighting.metrics())
                metrics.write(step, row)
                bar.set_postfix(
                    env=env_steps(),
                    loss=f"{row['loss/total']:.3f}",
                    ret=f"{row.get('selfplay/return', float('nan')):.1f}",
                )
                sums.clear()
                timers.clear()
                count, t_log = 0, now
            bar.update(1)

            if step % cfg.eval.interval == 0 and step < o.training_steps:
                row = {"env_steps": env_steps()}
                for res in evaluate_all("periodic", cfg.eval.periodic_max_steps).values():
                    if len(eval_games) == 1:
                        row.update({"eval/return": res.mean, "eval/return_std": res.std})
                    else:
                        row.update(
                            {
                                f"eval/{res.game}/return": res.mean,
                                f"eval/{res.game}/return_std": res.std,
                            }
                        )
                metrics.write(step, row)
            if step % o.checkpoint_interval == 0 or step == o.training_steps:
                checkpoint()
            if stop_after is not None and step >= stop_after:
                return TrainResult(run.path, step, env_steps(), None)
            if max_seconds is not None and elapsed() >= max_seconds:
                stopped_by_time = True
                checkpoint()
                break
    finally:
        bar.close()
        metrics.close()

    # ---- final evaluation with the final weights (A9; not the best checkpoint, issue #22)
    finals = evaluate_all("final", cfg.eval.final_max_steps)
    save_model(
        run.path / "model.pt",
        model,
        cfg,
        games=games,
        obs_shape=obs_shape,
        stage=run.stage,
        step=step,
    )
    first = next(iter(finals.values()))
    summary = {
        "game": first.game,
        "games": games,
        "method": method,
        "seed": cfg.seed,
        "steps": step,
        "env_steps": env_steps(),
        "wall_s": elapsed(),
        "stopped_by_time": stopped_by_time,
        "final": first.summary(),
        "finals": {g: res.summary() for g, res in finals.items()},
    }
    atomic_write_text(run.path / "final.json", json.dumps(summary, indent=2) + "\n")
    return TrainResult(run.path, step, env_steps(), first, finals)


def _replay_name(i: int) -> str:
    return "replay" if i == 0 else f"replay-{i}"  # `xtra data from-run` reads step-N/replay


def _live_indices(replay: ReplayBuffer) -> np.ndarray:
    return np.arange(replay.total_added - len(replay), replay.total_added)


def _progress(enabled: bool, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        smoothing=0.05,
    )
