"""Multi-game pretraining of one student (``xtra distill``; paper §3.1, App. A, C; spec B10.3-5).

One student network (EZ-L with the 18-way policy head in the paper: ``--set model.size=ez-l``)
is trained on every pretraining dataset at once. Each step's batch of ``optim.batch_size``
samples is split evenly over the games (tasks sampled uniformly; :func:`split_batch` handles a
remainder) and the per-game sub-batches are concatenated, ``groups`` = game index, so the loss
of each game is logged as ``loss/<game>/<term>``. Targets, by ``targets``:

* ``teacher`` (XTRA): from the frozen teacher of each sample's game (decision 5);
* ``self``: the student reanalyses with its own target network (the multi-game offline-RL
  baseline, App. C);
* ``bc``: multi-task behaviour cloning on the dataset actions (Table 1's BC column); only the
  policy loss is on, and the student acts by the argmax of its policy head (``prior``).

The consistency loss always trains the student on its own unroll (it is 0-weighted only for BC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from xtra.config import Config, apply_overrides
from xtra.device import resolve_device
from xtra.errors import XtraError
from xtra.learn.loop import (
    TrainResult,
    build_networks,
    evaluator,
    finished_result,
    make_planner,
    reanalyze_targets,
    run_loop,
)
from xtra.rundir import RunDir
from xtra.transfer.sources import common_obs_shape, dataset_sources, load_teachers, open_dataset
from xtra.transfer.targets import TARGET_KINDS, bc_targets, teacher_targets

POLICY_SOFTMAX = ("legal", "all")

METHODS = {"teacher": "XTRA (distilled)", "self": "multi-game offline RL", "bc": "multi-task BC"}


def bc_config(cfg: Config) -> Config:
    """Behaviour cloning trains the policy head only: value, value-prefix, consistency weights 0."""
    return dataclasses.replace(
        cfg,
        loss=dataclasses.replace(
            cfg.loss, value_coeff=0.0, reward_coeff=0.0, consistency_coeff=0.0
        ),
    )


def distill(
    datasets: Mapping[str, str | Path],
    cfg: Config,
    run_dir: str | Path,
    *,
    teachers: Mapping[str, str | Path] | None = None,
    targets: str | None = None,
    policy_softmax: str | None = None,
    eval_policy: str | None = None,
    eval_games: Sequence[str] | None = None,
    method: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Pretrain one student on ``datasets`` ({game: dataset dir}) in ``run_dir`` (resuming it).

    Args:
        teachers: {game: teacher model.pt or run dir}, one per dataset (``targets="teacher"``).
        targets: ``teacher``, ``self`` or ``bc`` (module docstring).
        policy_softmax: policy loss over each game's ``legal`` ids, or over ``all`` 18 outputs
            as XTRA's multi-game code (spec B2).
        eval_policy: ``search`` or ``prior`` (default: ``prior`` for bc, ``search`` otherwise).
        eval_games: games evaluated periodically and at the end (default: the dataset games).
        method: label in eval.csv (default by ``targets``).

    ``targets``, ``policy_softmax`` and ``eval_policy`` default to the config's
    ``transfer.distill_targets``, ``transfer.policy_softmax`` and ``transfer.eval_policy``; an
    argument given here replaces its field, so ``config.yaml`` records what the run did.
    """
    if targets is not None and targets not in TARGET_KINDS:
        raise XtraError(f"unknown --targets {targets!r}: choose one of {', '.join(TARGET_KINDS)}")
    if policy_softmax is not None and policy_softmax not in POLICY_SOFTMAX:
        raise XtraError(f"unknown --policy-softmax {policy_softmax!r}: choose legal or all")
    if eval_policy is not None and eval_policy not in ("auto", "search", "prior"):
        raise XtraError(f"unknown --eval-policy {eval_policy!r}: choose search or prior")
    switches = {
        "transfer.distill_targets": targets,
        "transfer.policy_softmax": policy_softmax,
        "transfer.eval_policy": eval_policy,
    }
    cfg = apply_overrides(cfg, {k: v for k, v in switches.items() if v is not None})
    # Finetuning switches (the target's rows apart from the offline ones, the target's loss at
    # full weight): a student has no target game, so its games' balanced sub-batches go through
    # in one pass under one mean, and config.yaml says so whatever the preset chose.
    cfg = apply_overrides(
        cfg, {"transfer.separate_batchnorm": False, "transfer.loss_combination": "mean"}
    )
    targets, policy_softmax = cfg.transfer.distill_targets, cfg.transfer.policy_softmax
    eval_policy = cfg.transfer.eval_policy
    if eval_policy == "auto":
        eval_policy = "prior" if targets == "bc" else "search"
    if not datasets:
        raise XtraError("give at least one --data GAME=DATASET")
    teachers = dict(teachers or {})
    if targets == "teacher":
        missing = [g for g in datasets if g not in teachers]
        if missing:
            raise XtraError(f"no --teacher for {', '.join(missing)}: give GAME=CKPT for each game")
        extra = [g for g in teachers if g not in datasets]
        if extra:
            raise XtraError(
                f"--teacher for {', '.join(extra)}, which has no --data: give its dataset or drop it"
            )
    elif teachers:
        raise XtraError(f"--teacher is only used with --targets teacher, not {targets}")
    if targets == "bc":
        cfg = bc_config(cfg)
    method = method or METHODS[targets]
    games = list(datasets)
    replays = {g: open_dataset(datasets[g], g, cfg)[0] for g in games}
    obs_shape = common_obs_shape(replays)
    info = {
        "games": games,
        "method": method,
        "targets": targets,
        "policy_softmax": policy_softmax,
        "datasets": {g: str(Path(p).resolve()) for g, p in datasets.items()},
        "teachers": {g: str(Path(p).resolve()) for g, p in teachers.items()},
    }
    run = RunDir(run_dir, cfg, stage="distill", info=info)
    done = finished_result(run)
    if done is not None:
        return done
    device = resolve_device(cfg.device)
    nets, learner = build_networks(cfg, obs_shape, device)
    if targets == "teacher":
        makers = {
            g: teacher_targets(teacher, tcfg, cfg, device, noise=cfg.transfer.teacher_noise)
            for g, (teacher, tcfg) in load_teachers(teachers, obs_shape, cfg, device).items()
        }
    elif targets == "self":  # offline EZ on every game (spec B10.2; App. C's baseline)
        planner = make_planner(nets.target, cfg, device, learner.amp)
        makers = {g: reanalyze_targets(planner, cfg) for g in games}
    else:
        makers = {g: bc_targets(cfg, device) for g in games}
    sources = dataset_sources(
        replays, makers, cfg.optim.batch_size, legal_softmax=policy_softmax == "legal"
    )
    return run_loop(
        run,
        cfg,
        nets,
        learner,
        sources,
        eval_games=list(eval_games or games),
        eval_fn=evaluator(cfg, device, learner.amp, policy=eval_policy),
        method=method,
        obs_shape=obs_shape,
        progress=progress,
        stop_after=stop_after,
        max_seconds=max_seconds,
    )
