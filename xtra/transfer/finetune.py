"""Finetuning a pretrained student on a target game (``xtra finetune``; paper §3.2, App. B, D).

The pretrained network (``distill``/``train`` model.pt) interacts with the target game exactly as
online EfficientZero (``train``: self-play, replay, reanalysis with the target network) while it
keeps training on the offline datasets of the pretraining games. Every step's batch is
``optim.batch_size`` target samples (source 0) plus ``transfer.offline_batch_size`` offline
samples split evenly over the M offline games (sources 1..M, ``split_batch``). Offline targets
come from the data (spec B4.2, decision 2; :func:`xtra.transfer.targets.data_targets`) or, with
``transfer.offline_targets``, from a reanalysis by the run's target network or from the source
games' teachers (:func:`xtra.transfer.targets.offline_target_makers`).

Task weights (Eq. 1, 2, App. B; spec B7): :class:`~xtra.transfer.task_weights.TaskWeights`
measures per-game gradient cosines in measurement steps and sets eta for each offline game, which
multiplies that game's PER weights (``transfer.loss_combination="mean"``, as the code) or its
mean loss (``"eq1"``; :func:`xtra.learn.loss.multitask_objective`).

Ablations (Table 1, Fig. 6-8, App. D), each changing only what it names:

* ``use_offline=False`` (``--no-offline``): target data only ("w/o cross-task");
* ``use_pretraining=False`` (``--no-pretraining``): random init, offline data kept;
* ``task_weights=False`` (``--no-task-weights``): eta = 1 ("w/o task weights");
* ``freeze=("representation",)`` (``--freeze representation``): those parameters leave the
  optimiser and their BatchNorm layers stay in eval mode (running statistics frozen);
* ``components="h"|"hg"|"hgf"|"all"`` (``--transfer``): which components are loaded (spec B3);
  the others keep their random initialisation;
* ``target_batch=N`` (``--target-batch``): N target samples per step (App. D's doubled batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from xtra.config import Config, apply_overrides
from xtra.device import resolve_device
from xtra.envs import make_env
from xtra.errors import CheckpointError, DatasetError, XtraError
from xtra.learn.loop import TrainResult, build_networks, finished_result
from xtra.learn.train import check_budget, online_stage
from xtra.model.networks import COMPONENTS
from xtra.rundir import RunDir, load_model
from xtra.transfer.sources import dataset_sources, load_teachers, obs_shape_of, open_dataset
from xtra.transfer.targets import offline_target_makers
from xtra.transfer.task_weights import TaskWeights

COMPONENT_SETS = {
    "h": ("representation",),
    "hg": ("representation", "dynamics"),
    "hgf": ("representation", "dynamics", "prediction"),
    "all": ("representation", "dynamics", "prediction", "projection"),
}
"""``transfer.components`` (``--transfer``): the components loaded from the pretrained model
(spec B3)."""

OFFLINE_TARGET_LABELS = {
    "reanalyze": "offline targets reanalysed",
    "teacher": "offline targets from teachers",
}
"""How a ``transfer.offline_targets`` other than the data shows in the method's name."""

# --------------------------------------------------------------------------- the stage


def finetune(
    target: str,
    cfg: Config,
    run_dir: str | Path,
    *,
    pretrained: str | Path | None,
    offline: Mapping[str, str | Path] | None = None,
    teachers: Mapping[str, str | Path] | None = None,
    use_offline: bool | None = None,
    use_pretraining: bool | None = None,
    task_weights: bool | None = None,
    freeze: Sequence[str] | None = None,
    components: str | None = None,
    target_batch: int | None = None,
    policy_softmax: str | None = None,
    offline_targets: str | None = None,
    method: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Finetune ``pretrained`` (model.pt or run dir) on ``target`` in ``run_dir`` (resuming it).

    The switches default to the config's ``transfer`` fields; an argument given here replaces its
    field, so ``config.yaml`` records what the run did.

    Args:
        offline: {game: dataset dir} of the pretraining games, trained on alongside the target.
        teachers: {game: teacher model.pt} of the offline games, used only when
            ``transfer.offline_targets="teacher"``.
        use_offline: False = "w/o cross-task": target samples only (``offline`` is ignored).
        use_pretraining: False = random init, seeded as ``train`` (``pretrained`` may be None).
        task_weights: False = eta fixed at 1 ("w/o task weights").
        freeze: components kept fixed (``representation`` for the frozen-h ablation).
        components: loaded from ``pretrained``: h, hg, hgf or all (spec B3).
        target_batch: target samples per step (sets ``optim.batch_size``).
        policy_softmax: policy loss of offline samples over their ``legal`` ids or ``all`` 18.
        offline_targets: ``data``, ``reanalyze`` or ``teacher`` (``transfer.offline_targets``).
    """
    for name in freeze or ():
        if name not in COMPONENTS:
            raise XtraError(f"unknown --freeze {name!r}: choose from {', '.join(COMPONENTS)}")
    if components is not None and components not in COMPONENT_SETS:
        raise XtraError(
            f"unknown --transfer {components!r}: choose one of {', '.join(COMPONENT_SETS)}"
        )
    if policy_softmax is not None and policy_softmax not in ("legal", "all"):
        raise XtraError(f"unknown --policy-softmax {policy_softmax!r}: choose legal or all")
    if target_batch is not None and target_batch < 1:
        raise XtraError(f"--target-batch must be >= 1, got {target_batch}")
    switches = {
        "transfer.use_offline": use_offline,
        "transfer.use_pretraining": use_pretraining,
        "transfer.task_weights": task_weights,
        "transfer.freeze": None if freeze is None else tuple(freeze),
        "transfer.components": components,
        "transfer.policy_softmax": policy_softmax,
        "transfer.offline_targets": offline_targets,
        "optim.batch_size": target_batch,
    }
    cfg = apply_overrides(cfg, {k: v for k, v in switches.items() if v is not None})
    check_budget(cfg)
    t = cfg.transfer
    use_offline, use_pretraining, freeze = t.use_offline, t.use_pretraining, t.freeze
    if use_pretraining and pretrained is None:
        raise XtraError("give --pretrained CKPT (or --no-pretraining for a random init)")
    offline = dict(offline or {}) if use_offline else {}
    if use_offline and not offline:
        raise XtraError("give at least one --offline GAME=DATASET (or --no-offline)")
    device = resolve_device(cfg.device)
    state = None
    if use_pretraining:
        pre_model, pre_cfg, payload = load_model(pretrained, "cpu")
        if pre_cfg.model != cfg.model:
            # The weights fix the architecture: the run uses (and config.yaml records) the
            # pretrained model's section, whatever the preset or --set said.
            changed = [
                f"{f.name}={getattr(pre_cfg.model, f.name)!r}"
                for f in dataclasses.fields(cfg.model)
                if getattr(pre_cfg.model, f.name) != getattr(cfg.model, f.name)
            ]
            print(f"note: model section taken from {pretrained}: {', '.join(changed)}")
            cfg = dataclasses.replace(cfg, model=pre_cfg.model)
        state = pre_model.state_dict()
    env = make_env(target, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    try:
        if use_pretraining and tuple(payload["obs_shape"]) != tuple(env.obs_shape):
            raise CheckpointError(
                f"{pretrained} sees observations {tuple(payload['obs_shape'])}, "
                f"{env.game} gives {tuple(env.obs_shape)}"
            )
        games = [g for g in offline]
        if env.game in games:
            raise XtraError(f"{env.game} is the target game: drop it from --offline")
        m = len(games)
        if m and cfg.transfer.offline_batch_size < m:
            raise XtraError(
                f"transfer.offline_batch_size={cfg.transfer.offline_batch_size} is smaller than "
                f"the {m} offline games: raise it"
            )
        replays = {g: open_dataset(offline[g], g, cfg)[0] for g in games}
        for g, r in replays.items():
            if obs_shape_of(r) != tuple(env.obs_shape):
                raise DatasetError(
                    f"{g}'s dataset has observations {obs_shape_of(r)}, {env.game} gives "
                    f"{tuple(env.obs_shape)}: one network needs one shape"
                )
        teacher_nets = None
        if games and t.offline_targets == "teacher":
            missing = [g for g in games if g not in (teachers or {})]
            if missing:
                raise XtraError(
                    "transfer.offline_targets=teacher needs a teacher for every offline game: "
                    f"give --offline-teacher GAME=CKPT for {', '.join(missing)}"
                )
            teacher_nets = load_teachers(
                {g: teachers[g] for g in games}, tuple(env.obs_shape), cfg, device
            )
        method = method or method_label(
            use_offline=use_offline,
            use_pretraining=use_pretraining,
            task_weights=t.task_weights,
            freeze=freeze,
            components=t.components,
            offline_targets=t.offline_targets,
            separate_batchnorm=t.separate_batchnorm,
            loss_combination=t.loss_combination,
        )
        info = {
            "game": env.game,
            "method": method,
            "pretrained": str(Path(pretrained).resolve()) if use_pretraining else None,
            "offline": {g: str(Path(p).resolve()) for g, p in offline.items()},
            "transfer": t.components if use_pretraining else None,
            "freeze": list(freeze),
            "policy_softmax": t.policy_softmax,
            "offline_targets": t.offline_targets if offline else None,
        }
        run = RunDir(run_dir, cfg, stage="finetune", info=info)
        done = finished_result(run)
        if done is not None:
            return done
        nets, learner = build_networks(
            cfg,
            env.obs_shape,
            device,
            pretrained_state=state,
            components=COMPONENT_SETS[t.components],
            freeze=freeze,
        )
        makers = offline_target_makers(
            cfg,
            games,
            nets.target,
            device,
            amp=learner.amp,
            teachers=teacher_nets,
        )
        offline_sources = (
            dataset_sources(
                replays,
                makers,
                cfg.transfer.offline_batch_size,
                legal_softmax=t.policy_softmax == "legal",
            )
            if games
            else []
        )
        return online_stage(
            env,
            cfg,
            run,
            nets,
            learner,
            method=method,
            offline_sources=offline_sources,
            weights=TaskWeights.from_config(cfg, games) if games else None,
            progress=progress,
            stop_after=stop_after,
            max_seconds=max_seconds,
        )
    finally:
        env.close()


def method_label(
    *,
    use_offline: bool = True,
    use_pretraining: bool = True,
    task_weights: bool = True,
    freeze: Sequence[str] = (),
    components: str = "all",
    offline_targets: str = "data",
    separate_batchnorm: bool = False,
    loss_combination: str = "mean",
) -> str:
    """The method's name in eval.csv and reports: "XTRA" and its ablations, named as the paper's
    Table 1 columns (``xtra.games.TABLE1_METHODS``), e.g. "XTRA w/o cross-task"."""
    parts = []
    if not use_offline:
        parts.append("w/o cross-task")
    if not use_pretraining:
        parts.append("w/o pretraining")
    elif components != "all":
        parts.append(f"transferring {components}")
    if use_offline and not task_weights:
        parts.append("w/o task weights")
    if use_offline and offline_targets != "data":
        parts.append(OFFLINE_TARGET_LABELS[offline_targets])
    if use_offline and separate_batchnorm:
        parts.append("separate BatchNorm")
    if use_offline and loss_combination == "eq1":
        parts.append("Eq. 1 loss")
    if freeze:
        parts.append("frozen " + "+".join(freeze))
    return " ".join(["XTRA", ", ".join(parts)]) if parts else "XTRA"
