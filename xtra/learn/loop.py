"""The training loop, written once: every stage is one call of :func:`run_loop`.

A stage (online EfficientZero, an offline teacher, multi-game distillation, finetuning) differs
only by its *sources* -- replay buffers, each with a share of the batch and a target maker -- by an
optional *collector* that acts in the environment (online stages), and by optional *task weights*
of the sources (finetuning). One step, :func:`train_step`, reads as the algorithm::

    for each source i:  sample_i  = PER sample of B_i windows (beta 0.4 -> 1)
                        targets_i = source.make_targets(sample_i)   (reanalyse / teacher / data / BC)
    batch = concat_i(sample_i, targets_i)
    batch.task_weights = eta  (finetuning: Eq. 2 / App. B)
    update(network, batch)  (Eq. 3 per sample, Eq. 1 over sources); priorities back to each source

and :func:`run_loop` wraps it with what a run needs around the algorithm: the warm-up and
self-play pacing (collector), the lagged target network (spec A6.5), metrics, periodic and final
evaluation (spec A9), checkpoints and resume. Every stateful piece (networks, optimiser, scaler,
replay or the priorities of fixed datasets, environments, half-built trajectories, all random
generators) goes into each checkpoint, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from xtra import seeds
from xtra.act.evaluate import EvalResult, evaluate, evaluation_kwargs
from xtra.act.planner import Planner
from xtra.config import Config
from xtra.data.replay import ReplayBuffer, SampledBatch, beta_at
from xtra.device import amp_enabled
from xtra.errors import CheckpointError
from xtra.learn.batch import LearnBatch, Targets, concat_batches, to_learn_batch
from xtra.learn.learner import Learner, UpdateResult
from xtra.learn.loss import LossSettings
from xtra.learn.reanalyze import reanalyze
from xtra.learn.schedules import learning_rate
from xtra.model.networks import EfficientZeroNet, freeze_component
from xtra.rundir import (
    MetricsWriter,
    RunDir,
    append_eval_rows,
    checkpoint_name,
    load_weights,
    read_final,
    save_model,
    truncate_eval_rows,
)
from xtra.search import search_kwargs

TargetMaker = Callable[[SampledBatch, ReplayBuffer, np.random.Generator], Targets]
"""(sampled batch, its replay, rng) -> training targets on the learner's device."""

EvalFn = Callable[[torch.nn.Module, str, int], EvalResult]
"""(model, game, max_steps) -> evaluation result."""


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

    ``batch_size(step)``: this source's share of the step's batch. ``offline``: a fixed dataset
    (only its priorities go into checkpoints; an online replay is saved whole).
    ``legal_softmax``: the policy loss is a softmax over the game's legal ids (True) or over all
    18 outputs as XTRA's multi-game code (False, spec B2).
    """

    game: str
    replay: ReplayBuffer
    make_targets: TargetMaker
    batch_size: Callable[[int], int]
    auto_td_steps: int | None
    offline: bool
    legal_softmax: bool = True


class Collector(Protocol):
    """What the loop needs from an online data collector (self-play)."""

    env_steps: int

    def warm_up(self) -> None: ...
    def advance(self, step: int, progress: float) -> None: ...
    def log_row(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any], sources: list[Source]) -> None: ...


DrawFn = Callable[[int, np.random.Generator], LearnBatch]
"""``draw(n, rng)``: a fresh batch of n samples of every source, targets made (train_step)."""


class SourceWeights(Protocol):
    """Per-step weights of the sources (finetuning's task weights, Eq. 1-2; spec B7).

    ``weights_for(step, batch, learner, draw)`` runs just before each update on the concatenated
    batch and returns eta ``[G]``, one weight per source (the target first); ``draw(n, rng)``
    gives a fresh batch of n samples of every source, for measurements that need more than the
    step's. Its state goes into every checkpoint."""

    def weights_for(
        self, step: int, batch: LearnBatch, learner: Learner, draw: DrawFn
    ) -> torch.Tensor: ...
    def metrics(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- networks


@dataclass
class Networks:
    """The trained network and its two lagged copies (spec A6.5).

    ``target`` makes the reanalysis targets; ``next_target`` is the copy that becomes the target
    at the next rotation, so the target lags the trained network by 200-400 steps as in EZ."""

    model: EfficientZeroNet
    target: EfficientZeroNet
    next_target: EfficientZeroNet

    def rotate_targets(self) -> None:
        self.target.load_state_dict(self.next_target.state_dict())
        self.next_target.load_state_dict(self.model.state_dict())


def build_networks(
    cfg: Config,
    obs_shape: tuple[int, int, int],
    device: torch.device,
    *,
    pretrained_state: dict[str, torch.Tensor] | None = None,
    components: Sequence[str] = (),
    freeze: Sequence[str] = (),
) -> tuple[Networks, Learner]:
    """A network seeded by ``cfg.seed`` (the ``pretrained_state``'s ``components`` copied in, the
    ``freeze`` components frozen), its lagged copies, and the learner of its trainable part."""
    torch.manual_seed(cfg.seed)
    model = EfficientZeroNet(cfg.model, obs_shape).to(device)
    if pretrained_state is not None:
        model.load_components(dict(pretrained_state), components)
    for name in freeze:
        freeze_component(model, name)
    nets = Networks(model, copy.deepcopy(model), copy.deepcopy(model))
    return nets, build_learner(model, cfg, device)


def build_learner(model: torch.nn.Module, cfg: Config, device: torch.device) -> Learner:
    """The :class:`Learner` of ``model`` with the run's optimiser, objective and seed."""
    o, lo, m = cfg.optim, cfg.loss, cfg.model
    return Learner(
        model,
        device,
        loss=LossSettings(
            support_size=m.support_size,
            transform_eps=m.transform_eps,
            faithful_transform=m.faithful_transform,
            value_coeff=lo.value_coeff,
            policy_coeff=lo.policy_coeff,
            consistency_coeff=lo.consistency_coeff,
            reward_coeff=lo.reward_coeff,
            latent_grad_scale=lo.latent_grad_scale,
            lstm_horizon=cfg.search.lstm_horizon,
            loss_masks=lo.loss_masks,
            augment_shift=lo.augment_shift,
            augment_intensity=lo.augment_intensity,
            predict_consistency_targets=lo.predict_consistency_targets,
        ),
        lr_at=partial(
            learning_rate,
            lr=o.lr,
            warmup_steps=o.warmup_steps,
            decay_steps=o.lr_decay_steps,
            decay_rate=o.lr_decay_rate,
            schedule=o.lr_schedule,
        ),
        optimizer=o.optimizer,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        amp=amp_enabled(o.amp, device),
        priority_eps=cfg.replay.priority_eps,
        loss_combination=cfg.transfer.loss_combination,
        seed=seeds.stream(cfg.seed, seeds.AUGMENTATION),
        separate_batchnorm=cfg.transfer.separate_batchnorm,
    )


def make_planner(model: torch.nn.Module, cfg: Config, device: torch.device, amp: bool) -> Planner:
    """A planner searching with ``model`` under the run's search settings."""
    return Planner(
        model,
        device,
        search_kwargs=search_kwargs(cfg.search, cfg.discount),
        amp=amp,
        cuda_graphs=cfg.search.cuda_graphs,
    )


def reanalyze_targets(
    planner: Planner,
    cfg: Config,
    *,
    add_noise: bool | None = None,
    reanalyze_ratio: float | None = None,
) -> TargetMaker:
    """A target maker that reanalyses with ``planner`` (spec A6.4); ``add_noise`` and
    ``reanalyze_ratio`` default to ``targets.reanalyze_noise`` and ``targets.reanalyze_ratio``."""
    t = cfg.targets
    kwargs = dict(
        discount=cfg.discount,
        lstm_horizon=cfg.search.lstm_horizon,
        policy_size=cfg.model.policy_size,
        reanalyze_ratio=t.reanalyze_ratio if reanalyze_ratio is None else reanalyze_ratio,
        add_noise=t.reanalyze_noise if add_noise is None else add_noise,
        value_bootstrap=t.value_bootstrap,
        policy_target=t.policy_target,
    )

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        return reanalyze(sample, replay, planner, rng, **kwargs)

    return make


def evaluator(cfg: Config, device: torch.device, amp: bool, policy: str = "search") -> EvalFn:
    """The evaluation protocol of spec A9 with the run's settings, as an :data:`EvalFn`."""
    kwargs = evaluation_kwargs(cfg)

    def fn(model: torch.nn.Module, game: str, max_steps: int) -> EvalResult:
        return evaluate(
            model, game, policy=policy, max_steps=max_steps, device=device, amp=amp, **kwargs
        )

    return fn


def split_batch(total: int, num_sources: int, step: int) -> list[int]:
    """Uniform task sampling: ``total`` samples split evenly over ``num_sources`` (decision 3).

    Each source gets ``total // m``; the ``total % m`` left over go one each to consecutive
    sources starting at ``step % m``, so sub-batches differ by at most one sample within a step
    and are exactly equal summed over any ``m`` consecutive steps.
    """
    base, extra = divmod(total, num_sources)
    return [base + int((i - step) % num_sources < extra) for i in range(num_sources)]


# --------------------------------------------------------------------------- one step


@dataclass
class StepOutput:
    result: UpdateResult
    batch: LearnBatch
    seconds: dict[str, float]  # sample, reanalyze, update


def draw_batch(
    sources: Sequence[Source],
    sizes: Sequence[int],
    rng: np.random.Generator,
    *,
    learner: Learner,
    beta: float,
    unroll_steps: int,
    td_steps: int,
    policy_size: int,
) -> tuple[list, LearnBatch, float, float]:
    """Sample ``sizes[i]`` positions of source i and make their targets -> (the samples, the
    concatenated batch on the learner's device, seconds sampling, seconds making targets)."""
    t_sample = t_targets = 0.0
    samples, batches = [], []
    for s, n in zip(sources, sizes):
        ta = time.perf_counter()
        sample = s.replay.sample(
            n,
            unroll_steps=unroll_steps,
            td_steps=td_steps,
            auto_td_steps=s.auto_td_steps,
            rng=rng,
            beta=beta,
        )
        tb = time.perf_counter()
        targets = s.make_targets(sample, s.replay, rng)
        t_sample += tb - ta
        t_targets += time.perf_counter() - tb
        samples.append(sample)
        batches.append(
            to_learn_batch(
                sample,
                targets,
                s.replay.action_ids,
                policy_size=policy_size,
                device=learner.device,
                legal_softmax=s.legal_softmax,
            )
        )
    return samples, concat_batches(batches), t_sample, t_targets


def train_step(
    step: int,
    sources: Sequence[Source],
    learner: Learner,
    rng: np.random.Generator,
    *,
    beta: float,
    unroll_steps: int,
    td_steps: int,
    policy_size: int,
    weights: SourceWeights | None = None,
    progress: float = 0.0,
) -> StepOutput:
    """One update of the network on every source's share of the batch (module docstring);
    ``progress`` in [0, 1]: the share of the run done, for a learning rate relative to it."""
    draw = partial(
        draw_batch,
        sources,
        learner=learner,
        beta=beta,
        unroll_steps=unroll_steps,
        td_steps=td_steps,
        policy_size=policy_size,
    )
    samples, batch, t_sample, t_targets = draw([s.batch_size(step) for s in sources], rng)
    t_update = time.perf_counter()
    if weights is not None:
        eta = weights.weights_for(step, batch, learner, lambda n, g: draw([n] * len(sources), g)[1])
        if batch.groups is not None:
            batch.task_weights = eta
    result = learner.update(batch, step, progress)
    priorities = result.priorities.numpy()
    start = 0
    for s, sample in zip(sources, samples):
        s.replay.update_priorities(sample.indices, priorities[start : start + len(sample)])
        start += len(sample)
    seconds = {
        "sample": t_sample,
        "reanalyze": t_targets,
        "update": time.perf_counter() - t_update,
    }
    return StepOutput(result, batch, seconds)


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


class MetricAverages:
    """Running sums of per-step metrics and phase timers, averaged into one row per log interval."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.timers: dict[str, float] = defaultdict(float)
        self.count = 0
        self.t_start = time.perf_counter()

    def add(self, metrics: dict[str, float], seconds: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] += v
        for k, v in seconds.items():
            self.timers[k] += v
        self.count += 1

    def pop(self) -> tuple[dict[str, float], float]:
        """(the averaged row, training steps per second) since the last call."""
        now = time.perf_counter()
        row = {k: v / self.count for k, v in self.sums.items()}
        row.update({f"time/{k}": v / self.count for k, v in self.timers.items()})
        rate = self.count / max(now - self.t_start, 1e-9)
        self.sums.clear()
        self.timers.clear()
        self.count, self.t_start = 0, now
        return row, rate


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
    """One ``eval.csv`` row per episode."""
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


def finished_result(run: RunDir) -> TrainResult | None:
    """The result of a run that already finished (prints it), or None."""
    summary = read_final(run.path)
    if summary is None:
        return None
    means = ", ".join(f"{g} {s['mean']:.2f}" for g, s in summary["finals"].items())
    print(f"{run.path} is finished: final score {means} (delete the directory to train again)")
    return TrainResult(run.path, summary["steps"], summary["env_steps"], None)


# --------------------------------------------------------------------------- the loop


@dataclass
class _Run:
    """What the loop carries between its pieces (one run, one process)."""

    run: RunDir
    cfg: Config
    nets: Networks
    learner: Learner
    sources: list[Source]
    collector: Collector | None
    weights: SourceWeights | None
    rng: np.random.Generator
    step: int = 0
    elapsed_before: float = 0.0  # wall-clock seconds spent by earlier processes of this run
    t_start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    def env_steps(self) -> int:
        return self.collector.env_steps if self.collector is not None else 0


def _restore(r: _Run) -> bool:
    """Load the run's newest checkpoint into every piece; False when there is none."""
    loaded = r.run.load_checkpoint()
    if loaded is None:
        return False
    state, ckpt = loaded
    r.step = state["step"]
    r.elapsed_before = state["elapsed"]
    what = (
        f"{ckpt / 'state.pt'} does not fit the network of this run's config "
        f"(model.size={r.cfg.model.size})"
    )
    fix = (
        f"resume with the run's own options (--config {r.run.path / 'config.yaml'}), "
        "or choose a new --run-dir"
    )
    for key, net in (
        ("model", r.nets.model),
        ("target_model", r.nets.target),
        ("snapshot_model", r.nets.next_target),
    ):
        load_weights(net, state[key], what, fix)
    r.learner.load_state_dict(state["learner"])
    r.rng.bit_generator.state = state["rng"]
    for i, s in enumerate(r.sources):
        if s.offline:
            s.replay.update_priorities(_live_indices(s.replay), state["priorities"][i])
        else:
            try:
                s.replay = ReplayBuffer.load(ckpt / _replay_name(i))
            except CheckpointError as e:  # a checkpoint written before checksums, damaged
                raise CheckpointError(
                    f"{e}: only the newest checkpoint is kept, so restore it from a backup, "
                    f"or remove {ckpt.parent} to start the run over"
                ) from None
    if r.collector is not None:
        r.collector.load_state_dict(state, r.sources)
    if r.weights is not None:
        r.weights.load_state_dict(state["weighting"])
    return True


def _checkpoint(r: _Run) -> None:
    """Save every stateful piece at ``r.step`` (once per step: a wall-clock stop right after a
    periodic checkpoint keeps that one, so the newest checkpoint is never replaced in place)."""
    latest = r.run.latest_checkpoint()
    if latest is not None and latest.name == checkpoint_name(r.step):
        return
    state = {
        "step": r.step,
        "model": r.nets.model.state_dict(),
        "target_model": r.nets.target.state_dict(),
        "snapshot_model": r.nets.next_target.state_dict(),
        "learner": r.learner.state_dict(),
        "rng": r.rng.bit_generator.state,
        "elapsed": r.elapsed(),
        "priorities": {
            i: s.replay.priorities(_live_indices(s.replay))
            for i, s in enumerate(r.sources)
            if s.offline
        },
    }
    if r.collector is not None:
        state.update(r.collector.state_dict())
    if r.weights is not None:
        state["weighting"] = r.weights.state_dict()

    def save_replays(d: Path) -> None:
        for i, s in enumerate(r.sources):
            if not s.offline:
                s.replay.save(d / _replay_name(i))

    r.run.save_checkpoint(r.step, state, extra=save_replays)


def _evaluate_all(
    r: _Run, eval_games: Sequence[str], eval_fn: EvalFn, method: str, kind: str, max_steps: int
) -> dict[str, EvalResult]:
    """Evaluate on every game and append the episodes to RUN/eval.csv."""
    results = {}
    for game in eval_games:
        res = eval_fn(r.nets.model, game, max_steps)
        rows = eval_rows(
            res,
            method=method,
            seed=r.cfg.seed,
            step=r.step,
            env_steps=r.env_steps(),
            kind=kind,
            wall_s=r.elapsed(),
        )
        append_eval_rows(r.run.path, rows)
        results[res.game] = res
    return results


def _eval_metrics(results: dict[str, EvalResult], env_steps: int) -> dict[str, float]:
    """The metrics.csv row of a periodic evaluation."""
    row: dict[str, float] = {"env_steps": env_steps}
    for res in results.values():
        if len(results) == 1:
            row.update({"eval/return": res.mean, "eval/return_std": res.std})
        else:
            row.update(
                {f"eval/{res.game}/return": res.mean, f"eval/{res.game}/return_std": res.std}
            )
    return row


def _finish(
    r: _Run,
    eval_games: Sequence[str],
    eval_fn: EvalFn,
    method: str,
    obs_shape: tuple[int, int, int],
    stopped_by_time: bool,
) -> TrainResult:
    """Final evaluation with the final weights (A9; not the best checkpoint), model.pt, then
    final.json, which marks the run finished."""
    games = [s.game for s in r.sources]
    finals = _evaluate_all(r, eval_games, eval_fn, method, "final", r.cfg.eval.final_max_steps)
    save_model(
        r.run.path / "model.pt",
        r.nets.model,
        r.cfg,
        games=games,
        obs_shape=obs_shape,
        stage=r.run.stage,
        step=r.step,
    )
    first = next(iter(finals.values()))
    r.run.write_final(
        {
            "game": first.game,
            "games": games,
            "method": method,
            "seed": r.cfg.seed,
            "steps": r.step,
            "env_steps": r.env_steps(),
            "wall_s": r.elapsed(),
            "stopped_by_time": stopped_by_time,
            "final": first.summary(),
            "finals": {g: res.summary() for g, res in finals.items()},
        }
    )
    return TrainResult(r.run.path, r.step, r.env_steps(), first, finals)


def run_loop(
    run: RunDir,
    cfg: Config,
    nets: Networks,
    learner: Learner,
    sources: list[Source],
    *,
    eval_games: Sequence[str],
    eval_fn: EvalFn,
    method: str,
    obs_shape: tuple[int, int, int],
    collector: Collector | None = None,
    weights: SourceWeights | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``nets.model`` on ``sources`` in ``run`` (resuming its checkpoint).

    ``collector``: online data (self-play), paced to the training steps. ``weights``: per-step
    weights of the sources (finetuning). ``stop_after``: return right after that training step
    without a final evaluation, as if the process had been killed (tests of resumption).
    ``max_seconds``: a wall-clock budget counted across resumptions; when it runs out, training
    ends early and the final evaluation runs."""
    o, rp, tg = cfg.schedule, cfg.replay, cfg.targets
    games = [s.game for s in sources]
    r = _Run(
        run,
        cfg,
        nets,
        learner,
        sources,
        collector,
        weights,
        np.random.default_rng(seeds.stream(cfg.seed, seeds.LOOP)),
    )
    resumed = _restore(r)
    metrics = MetricsWriter(run.path, resume_step=r.step if resumed else None)
    truncate_eval_rows(run.path, r.step if resumed else None)
    r.t_start = time.perf_counter()

    if collector is not None:
        collector.warm_up()

    stopped_by_time = False
    bar = _progress(progress, o.training_steps, r.step, f"{run.stage} {'+'.join(games)}")
    averages = MetricAverages()
    try:
        while r.step < o.training_steps:
            t0 = time.perf_counter()
            progress = _progress_of(r.step, o.training_steps, r, max_seconds)
            if collector is not None:
                collector.advance(r.step, progress)
            t_selfplay = time.perf_counter() - t0
            if r.step % o.target_update_interval == 0:  # target lags 200-400 steps (A6.5)
                nets.rotate_targets()
            beta = beta_at(
                r.step, beta_start=rp.beta_start, beta_end=rp.beta_end, total_steps=o.training_steps
            )
            out = train_step(
                r.step,
                sources,
                learner,
                r.rng,
                beta=beta,
                unroll_steps=tg.unroll_steps,
                td_steps=tg.td_steps,
                policy_size=cfg.model.policy_size,
                weights=weights,
                progress=progress,
            )
            r.step += 1

            step_metrics = dict(out.result.metrics)
            if len(sources) > 1 and out.result.terms is not None:
                step_metrics.update(per_source_metrics(out.result.terms, out.batch.groups, games))
            averages.add(step_metrics, {"selfplay": t_selfplay, **out.seconds})
            if r.step % o.log_interval == 0 or r.step == o.training_steps:
                row, rate = averages.pop()
                row.update(
                    {
                        "env_steps": r.env_steps(),
                        "replay/size": sum(len(s.replay) for s in sources),
                        "replay/beta": beta,
                        "perf/steps_per_s": rate,
                        "perf/wall_s": r.elapsed(),
                    }
                )
                if collector is not None:
                    row.update(collector.log_row())
                if weights is not None:
                    row.update(weights.metrics())
                metrics.write(r.step, row)
                bar.set_postfix(
                    env=r.env_steps(),
                    loss=f"{row['loss/total']:.3f}",
                    ret=f"{row.get('selfplay/return', float('nan')):.1f}",
                )
            bar.update(1)

            if r.step % cfg.eval.interval == 0 and r.step < o.training_steps:
                results = _evaluate_all(
                    r, eval_games, eval_fn, method, "periodic", cfg.eval.periodic_max_steps
                )
                metrics.write(r.step, _eval_metrics(results, r.env_steps()))
            if r.step % o.checkpoint_interval == 0 or r.step == o.training_steps:
                _checkpoint(r)
            if stop_after is not None and r.step >= stop_after:
                return TrainResult(run.path, r.step, r.env_steps(), None)
            if max_seconds is not None and r.elapsed() >= max_seconds:
                stopped_by_time = True
                _checkpoint(r)
                break
    finally:
        bar.close()
        metrics.close()
    return _finish(r, eval_games, eval_fn, method, obs_shape, stopped_by_time)


def _progress_of(step: int, total: int, r: _Run, max_seconds: float | None) -> float:
    """The share of the run done: training steps, or the time budget spent, whichever is
    further (a time-limited run ends at 1 either way)."""
    done = step / total
    if max_seconds is not None:
        done = max(done, r.elapsed() / max_seconds)
    return min(done, 1.0)


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
