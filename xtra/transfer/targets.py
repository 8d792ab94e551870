"""Target makers of the transfer stages: who says what a sample should be trained toward.

A target maker turns one source's :class:`~xtra.data.replay.SampledBatch` into
:class:`~xtra.learn.batch.Targets` (``xtra.learn.loop.TargetMaker``). Online stages and
teachers reanalyse with their own target network (:func:`xtra.learn.loop.reanalyze_targets`);
the transfer stages add:

* :func:`teacher_targets` -- the frozen teacher of the sample's game: search policies over that
  game's legal ALE ids, n-step values bootstrapped with the teacher network's value, value
  prefixes from the data (decision 5; spec B10.3). XTRA's distillation.
* :func:`bc_targets` -- behaviour cloning: the dataset's action as a one-hot policy target
  (Table 1's BC column; the stage switches the other losses off).
* :func:`data_targets` -- offline samples while finetuning: targets straight from the data, no
  network (spec B4.2, decision 2).
* :func:`offline_target_makers` -- finetuning's choice between the three
  (``transfer.offline_targets``): the data, a reanalysis with the run's own target network, or
  the source game's teacher.
"""

from __future__ import annotations

import numpy as np
import torch

from xtra.actions import scatter_policy
from xtra.config import Config
from xtra.data.replay import ReplayBuffer, SampledBatch
from xtra.data.targets import (
    n_step_value_targets,
    value_prefix_targets,
    xtra_as_coded_value_targets,
)
from xtra.errors import XtraError
from xtra.learn.batch import Targets
from xtra.learn.loop import TargetMaker, make_planner, reanalyze_targets

OFFLINE_TARGET_KINDS = ("data", "reanalyze", "teacher")
"""``transfer.offline_targets``: where finetuning's offline samples get their targets."""

TARGET_KINDS = ("teacher", "self", "bc")
"""``xtra distill --targets``: XTRA's teachers, the student's own reanalysis, behaviour cloning."""


def teacher_targets(
    teacher: torch.nn.Module, teacher_cfg: Config, cfg: Config, device, *, noise: bool
) -> TargetMaker:
    """Targets from the frozen teacher (decision 5; B10.3): every sample's policy target is the
    visit distribution of a search with the teacher's own search settings (50 simulations in the
    paper preset) over the game's legal ids, ``noise`` = Dirichlet noise at its roots; values are
    n-step returns bootstrapped with the teacher network's value; value prefixes from the data."""
    planner = make_planner(teacher, teacher_cfg, device, amp=False)
    return reanalyze_targets(planner, cfg, add_noise=noise, reanalyze_ratio=1.0)


def bc_targets(cfg: Config, device) -> TargetMaker:
    """Behaviour cloning: policy target at t+u = one-hot of the dataset's ALE action a_{t+u}
    (u < K where it exists; zeros elsewhere, which the cross-entropy ignores). Value and
    value-prefix targets are zeros; the BC stage gives their losses weight 0."""
    p = cfg.model.policy_size

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        b, u_len = sample.mask.shape
        k = u_len - 1
        policy = np.zeros((b, u_len, p), dtype=np.float32)
        bi, ui = np.nonzero(sample.mask[:, :k] > 0)
        policy[bi, ui, sample.actions[bi, ui]] = 1.0
        return Targets(
            value=torch.zeros(b, u_len, device=device),
            value_prefix=torch.zeros(b, k, device=device),
            policy=torch.as_tensor(policy, device=device),
        )

    return make


def data_targets(cfg: Config, device: torch.device | str) -> TargetMaker:
    """Targets of offline samples straight from the data (spec B4.2, decision 2), no network.

    * policy at t+u: the stored visit distribution over the game's legal ids, scattered to the
      ``policy_size`` ALE ids (zeros past the end);
    * value: ``transfer.offline_value_target="n_step"`` -> sum_{i<n} g^i r_{t+u+i} + g^n
      root_{t+u+n} (the stored root value of the bootstrap state, 0 past the data; n =
      ``targets.td_steps``), or ``"xtra_as_coded"`` -> root_{t+u} + sum_{i<n} g^i r_{t+u+i}
      (D-XT-4);
    * value prefix: sums of the data's clipped rewards.
    """
    mode = cfg.transfer.offline_value_target

    def make(sample: SampledBatch, replay: ReplayBuffer, rng: np.random.Generator) -> Targets:
        if mode == "n_step":
            value = n_step_value_targets(
                sample.rewards,
                sample.bootstrap_root_values,
                sample.td_steps,
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
                n=cfg.targets.td_steps,
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


def offline_target_makers(
    cfg: Config,
    games: list[str],
    target_net: torch.nn.Module,
    device: torch.device,
    *,
    amp: bool,
    teachers: dict[str, tuple[torch.nn.Module, Config]] | None = None,
) -> dict[str, TargetMaker]:
    """{offline game: target maker} for finetuning, per ``transfer.offline_targets``.

    * ``data``: :func:`data_targets` (XTRA's code). A dataset of a random policy stores uniform
      visit distributions and root values of 0, so its rows pull the policy toward uniform.
    * ``reanalyze``: every offline sample is re-searched by ``target_net`` (the finetuning run's
      lagged target network, as its own replay) over the source game's legal ids, values
      bootstrapped with it: MuZero Reanalyze applied to the fixed data.
    * ``teacher``: :func:`teacher_targets` of each game's frozen teacher (``teachers``: one
      (model, config) per game, :func:`xtra.transfer.sources.load_teachers`), the distillation
      targets the student was trained on.
    Both searches re-search every sample (reanalysed share 1, as XTRA's distillation).
    """
    kind = cfg.transfer.offline_targets
    if kind == "data":
        maker = data_targets(cfg, device)
        return {g: maker for g in games}
    if kind == "reanalyze":
        maker = reanalyze_targets(
            make_planner(target_net, cfg, device, amp), cfg, reanalyze_ratio=1.0
        )
        return {g: maker for g in games}
    if kind == "teacher":
        return {
            g: teacher_targets(
                teachers[g][0], teachers[g][1], cfg, device, noise=cfg.transfer.teacher_noise
            )
            for g in games
        }
    raise XtraError(
        f"unknown transfer.offline_targets {kind!r}: choose from {', '.join(OFFLINE_TARGET_KINDS)}"
    )
