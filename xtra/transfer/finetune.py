"""Finetuning a pretrained student on a target game (``xtra finetune``; paper §3.2, App. B, D).

The pretrained network (``distill``/``train`` model.pt) interacts with the target game exactly as
online EfficientZero (``train``: self-play, replay, reanalysis with the target network) while it
keeps training on the offline datasets of the pretraining games. Every step's batch is
``optim.batch_size`` target samples (source 0) plus ``transfer.offline_batch_size`` offline
samples split evenly over the M offline games (sources 1..M, :func:`split_batch`). Offline targets
come from the data (spec B4.2, decision 2; :func:`offline_targets`).

Task weights (Eq. 1, 2, App. B; spec B7): :class:`TaskWeighting` measures per-game gradient
cosines in measurement steps and sets eta for each offline game, which multiplies that game's
PER weights (``transfer.loss_combination="mean"``, as the code) or its mean loss (``"eq1"``).

Ablations (Table 1, Fig. 6-8, App. D), each changing only what it names:

* ``offline=False`` (``--no-offline``): target data only ("w/o cross-task");
* ``use_pretraining=False`` (``--no-pretraining``): random init, offline data kept;
* ``task_weights=False`` (``--no-task-weights``): eta = 1 ("w/o task weights");
* ``freeze=("representation",)`` (``--freeze representation``): those parameters leave the
  optimiser and their BatchNorm layers stay in eval mode (running statistics frozen);
* ``transfer="h"|"hg"|"hgf"|"all"`` (``--transfer``): which components are loaded (spec B3);
  the others keep their random initialisation;
* ``target_batch=N`` (``--target-batch``): N target samples per step (App. D's doubled batch).
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xtra.config import Config
from xtra.data.replay import ReplayBuffer, SampledBatch
from xtra.data.targets import (
    n_step_value_targets,
    value_prefix_targets,
    xtra_as_coded_value_targets,
)
from xtra.envs import make_env
from xtra.errors import CheckpointError, DatasetError, XtraError
from xtra.learn.learner import LearnBatch, Learner
from xtra.learn.loss import Targets
from xtra.learn.reanalyze import scatter_policy
from xtra.learn.train import (
    Nets,
    SelfPlayCollector,
    Source,
    TargetMaker,
    TrainResult,
    finished_result,
    reanalyze_targets,
    resolve_device,
    run_loop,
    search_eval_fn,
    split_batch,
)
from xtra.model.networks import COMPONENTS, EfficientZeroNet
from xtra.rundir import RunDir, load_model
from xtra.transfer.sources import obs_shape_of, open_dataset
from xtra.transfer.task_weights import TaskWeights, per_task_gradients

TRANSFER = {
    "h": ("representation",),
    "hg": ("representation", "dynamics"),
    "hgf": ("representation", "dynamics", "prediction"),
    "all": ("representation", "dynamics", "prediction", "projection"),
}
"""``--transfer``: the components loaded from the pretrained model (spec B3)."""


# --------------------------------------------------------------------------- offline targets


def offline_targets(cfg: Config, device: torch.device | str) -> TargetMaker:
    """Targets of offline samples straight from the data (spec B4.2, decision 2), no network.

    * policy at t+u: the stored visit distribution over the game's legal ids, scattered to the
      ``policy_size`` ALE ids (zeros past the end);
    * value: ``transfer.offline_value_target="n_step"`` -> sum_{i<n} g^i r_{t+u+i} + g^n
      root_{t+u+n} (the stored root value of the bootstrap state, 0 past the data; n =
      ``replay.td_steps``), or ``"xtra_as_coded"`` -> root_{t+u} + sum_{i<n} g^i r_{t+u+i}
      (D-XT-4);
    * value prefix: sums of the data's clipped rewards.
    """
    mode = cfg.transfer.offline_value_target

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        if mode == "n_step":
            value = n_step_value_targets(
                sample.rewards,
                sample.bootstrap_root_values,
                sample.td,
                sample.mask,
                sample.bootstrap_valid,
                discount=cfg.discount,
            )
        elif mode == "xtra_as_coded":
            value = xtra_as_coded_value_targets(
                sample.rewards,
                sample.root_values,
                sample.mask,
                discount=cfg.discount,
                n=cfg.replay.td_steps,
            )
        else:
            raise XtraError(f"unknown transfer.offline_value_target {mode!r}")
        prefix = value_prefix_targets(
            sample.rewards, sample.mask, lstm_horizon=cfg.search.lstm_horizon
        )
        policy = sample.root_visits * sample.mask[..., None]
        policy = scatter_policy(policy, replay.action_ids, cfg.model.policy_size)
        return Targets(
            value=torch.as_tensor(value, device=device),
            value_prefix=torch.as_tensor(prefix, device=device),
            policy=torch.as_tensor(policy, device=device),
        )

    return make


# --------------------------------------------------------------------------- task weights


class TaskWeighting:
    """The :class:`~xtra.learn.train.Weighting` of finetuning: :class:`TaskWeights` in the loop.

    Each step, before the update: :meth:`TaskWeights.maybe_update`; in a measurement step, the
    per-sample losses of the step's batch (``learner.losses``: a forward pass of its own, but
    with the augmentation generator and BatchNorm statistics put back afterwards, so it is the
    same computation as the update's forward, as the code's shared one), weighted by
    the PER weights only (no eta, B7.1) and divided by K, give one gradient per source over the
    optimiser's parameters (:func:`per_task_gradients`), whose cosines are counted. Returns
    [1 + M] weights, target first.
    """

    def __init__(self, weights: TaskWeights):
        self.weights = weights

    def before_update(self, step: int, batch: LearnBatch, learner: Learner) -> torch.Tensor:
        tw = self.weights
        tw.maybe_update(step)
        if tw.measuring(step) and batch.groups is not None:
            params = [p for g in learner.optimizer.param_groups for p in g["params"]]
            # The update's forward must not see this one: put back the augmentation generator
            # and the BatchNorm running statistics, so the measured forward is the update's.
            generator = learner.generator.get_state()
            buffers = {k: b.clone() for k, b in learner.model.named_buffers()}
            terms = learner.losses(batch)
            scale = learner.scaler.get_scale() if learner.scaler.is_enabled() else 1.0
            per_sample = batch.weights * terms.total.float() / batch.actions.shape[1] * scale
            grads = per_task_gradients(
                per_sample, batch.groups, 1 + len(tw.games), params, retain_graph=False
            )
            tw.observe_gradients(grads / scale)
            learner.generator.set_state(generator)
            with torch.no_grad():
                for k, b in learner.model.named_buffers():
                    b.copy_(buffers[k])
        return tw.group_weights(batch.weights.device)

    def metrics(self) -> dict[str, float]:
        return self.weights.metrics()

    def state_dict(self) -> dict[str, Any]:
        return self.weights.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state)


# --------------------------------------------------------------------------- networks


def _stay_eval(self: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    """``train()`` of a frozen component: it (and its BatchNorm statistics) stays in eval mode."""
    return torch.nn.Module.train(self, False)


def freeze_component(model: EfficientZeroNet, name: str) -> None:
    """Take component ``name`` out of training: no gradients (so not in the optimiser built
    afterwards) and its modules kept in eval mode, whatever ``model.train()`` says."""
    for p in model.component_parameters(name):
        p.requires_grad_(False)
    prefixes = COMPONENTS[name]
    for key, module in model.named_children():
        if f"{key}." in prefixes:
            module.train = types.MethodType(_stay_eval, module)
            module.eval()


def build_nets(
    cfg: Config,
    obs_shape: tuple[int, int, int],
    device: torch.device,
    *,
    pretrained_state: Mapping[str, torch.Tensor] | None,
    components: Sequence[str],
    freeze: Sequence[str] = (),
) -> Nets:
    """Random init (seeded as :meth:`Nets.build`), the pretrained ``components`` copied in, the
    ``freeze`` components frozen; target and snapshot networks start as copies of the result."""
    torch.manual_seed(cfg.seed)
    model = EfficientZeroNet(cfg.model, obs_shape).to(device)
    if pretrained_state is not None:
        model.load_components(dict(pretrained_state), components)
    for name in freeze:
        freeze_component(model, name)
    target, snapshot = copy.deepcopy(model), copy.deepcopy(model)
    return Nets(model, target, snapshot, Learner(model, cfg, device))


# --------------------------------------------------------------------------- the stage


def finetune(
    target: str,
    cfg: Config,
    run_dir: str | Path,
    *,
    pretrained: str | Path | None,
    offline: Mapping[str, str | Path] | None = None,
    use_offline: bool = True,
    use_pretraining: bool = True,
    task_weights: bool = True,
    freeze: Sequence[str] = (),
    transfer: str = "all",
    target_batch: int | None = None,
    policy_softmax: str = "legal",
    method: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Finetune ``pretrained`` (model.pt or run dir) on ``target`` in ``run_dir`` (resuming it).

    Args:
        offline: {game: dataset dir} of the pretraining games, trained on alongside the target.
        use_offline: False = "w/o cross-task": target samples only (``offline`` is ignored).
        use_pretraining: False = random init, seeded as ``train`` (``pretrained`` may be None).
        task_weights: False = eta fixed at 1 (sets ``transfer.task_weights``).
        freeze: components kept fixed (``representation`` for the frozen-h ablation).
        transfer: components loaded from ``pretrained``: h, hg, hgf or all (spec B3).
        target_batch: target samples per step (default ``optim.batch_size``).
        policy_softmax: policy loss of offline samples over their ``legal`` ids or ``all`` 18.
    """
    if transfer not in TRANSFER:
        raise XtraError(f"unknown --transfer {transfer!r}: choose one of {', '.join(TRANSFER)}")
    for name in freeze:
        if name not in COMPONENTS:
            raise XtraError(f"unknown --freeze {name!r}: choose from {', '.join(COMPONENTS)}")
    if policy_softmax not in ("legal", "all"):
        raise XtraError(f"unknown --policy-softmax {policy_softmax!r}: choose legal or all")
    if use_pretraining and pretrained is None:
        raise XtraError("give --pretrained CKPT (or --no-pretraining for a random init)")
    offline = dict(offline or {}) if use_offline else {}
    if use_offline and not offline:
        raise XtraError("give at least one --offline GAME=DATASET (or --no-offline)")
    if target_batch is not None:
        if target_batch < 1:
            raise XtraError(f"--target-batch must be >= 1, got {target_batch}")
        cfg = dataclasses.replace(
            cfg, optim=dataclasses.replace(cfg.optim, batch_size=target_batch)
        )
    if not task_weights:
        cfg = dataclasses.replace(
            cfg, transfer=dataclasses.replace(cfg.transfer, task_weights=False)
        )
    device = resolve_device(cfg.device)
    state = None
    if use_pretraining:
        pre_model, pre_cfg, payload = load_model(pretrained, "cpu")
        if pre_cfg.model != cfg.model:
            cfg = dataclasses.replace(cfg, model=pre_cfg.model)  # the weights fix the architecture
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
        replays = {g: open_dataset(offline[g], g, cfg) for g in games}
        for g, r in replays.items():
            if obs_shape_of(r) != tuple(env.obs_shape):
                raise DatasetError(
                    f"{g}'s dataset has observations {obs_shape_of(r)}, {env.game} gives "
                    f"{tuple(env.obs_shape)}: one network needs one shape"
                )
        method = method or _method(use_offline, use_pretraining, task_weights, freeze, transfer)
        info = {
            "game": env.game,
            "method": method,
            "pretrained": str(Path(pretrained).resolve()) if use_pretraining else None,
            "offline": {g: str(Path(p).resolve()) for g, p in offline.items()},
            "transfer": transfer if use_pretraining else None,
            "freeze": list(freeze),
            "policy_softmax": policy_softmax,
        }
        run = RunDir(run_dir, cfg, stage="finetune", info=info)
        done = finished_result(run)
        if done is not None:
            return done
        nets = build_nets(
            cfg,
            env.obs_shape,
            device,
            pretrained_state=state,
            components=TRANSFER[transfer],
            freeze=freeze,
        )
        replay = ReplayBuffer.from_config(
            cfg.replay,
            frame_shape=env.frame_shape,
            frame_stack=cfg.env.frame_stack,
            action_ids=env.legal_actions,
        )
        sources = [
            Source(
                game=env.game,
                replay=replay,
                make_targets=reanalyze_targets(nets.target_planner(cfg), cfg),
                batch_size=lambda step: cfg.optim.batch_size,
                auto_td_steps=cfg.replay.auto_td_steps,
                fixed=False,
            )
        ]
        total = cfg.transfer.offline_batch_size
        maker = offline_targets(cfg, device)
        sources += [
            Source(
                game=g,
                replay=replays[g],
                make_targets=maker,
                batch_size=(lambda step, i=i: split_batch(total, m, step)[i]),
                auto_td_steps=None,
                fixed=True,
                policy_mask=policy_softmax == "legal",
            )
            for i, g in enumerate(games)
        ]
        weighting = TaskWeighting(TaskWeights.from_config(cfg, games)) if games else None
        collector = SelfPlayCollector(env, replay, nets, cfg)
        return run_loop(
            run,
            cfg,
            nets,
            sources,
            eval_games=[env.game],
            eval_fn=search_eval_fn(cfg, device, nets.learner.amp),
            method=method,
            obs_shape=env.obs_shape,
            collector=collector,
            progress=progress,
            stop_after=stop_after,
            max_seconds=max_seconds,
            weighting=weighting,
        )
    finally:
        env.close()


def _method(offline: bool, pretraining: bool, weights: bool, freeze, transfer: str) -> str:
    parts = []
    if not offline:
        parts.append("w/o cross-task")
    if not pretraining:
        parts.append("w/o pretraining")
    elif transfer != "all":
        parts.append(f"transfer {transfer}")
    if offline and not weights:
        parts.append("w/o task weights")
    if freeze:
        parts.append("frozen " + "+".join(freeze))
    return "XTRA" + (f" ({', '.join(parts)})" if parts else "")
