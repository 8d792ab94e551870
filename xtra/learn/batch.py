"""The learner's batch: what one training step trains on, and how per-source pieces join.

A step samples each source (online replay, offline datasets) with PER
(:class:`xtra.data.replay.SampledBatch`, numpy), makes that source's :class:`Targets`, moves
both to the device as one :class:`LearnBatch` per source (:func:`to_learn_batch`) and
concatenates them (:func:`concat_batches`); ``groups`` says which source each sample came from.
Shapes: B samples, K unroll steps, S stacked frames, P = policy head size (18).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xtra.data.replay import SampledBatch


@dataclass
class Targets:
    """Training targets for one batch."""

    value: torch.Tensor  # [B, K+1] scalar n-step value targets z_{t+k}
    value_prefix: torch.Tensor  # [B, K] sum of rewards r_t..r_{t+k-1} since the last LSTM reset
    policy: torch.Tensor  # [B, K+1, P] distributions (zeros past the end and on illegal ids)


@dataclass
class LearnBatch:
    """A training batch on the learner's device."""

    obs: torch.Tensor  # [B, S+K, C, H, W] uint8 frames t..t+S+K-1
    actions: torch.Tensor  # [B, K] int64 ids fed to the dynamics (ALE ids)
    mask: torch.Tensor  # [B, K+1] 1 where t+k is inside the trajectory
    targets: Targets
    weights: torch.Tensor  # [B] PER importance weights
    policy_mask: torch.Tensor | None = None  # [B, P] legal ids of each sample's game (None: all)
    groups: torch.Tensor | None = None  # [B] int64 source index (0 = the first source)
    task_weights: torch.Tensor | None = None  # [G] eta of each source (Eq. 1); None: all 1


def to_learn_batch(
    sample: SampledBatch,
    targets: Targets,
    legal_actions: np.ndarray,
    *,
    policy_size: int,
    device: torch.device,
    legal_softmax: bool = True,
) -> LearnBatch:
    """One source's sample and targets on ``device``. ``legal_softmax``: the policy loss is a
    softmax over the game's legal ids (EZ for one game) or, False, over all ``policy_size``
    outputs (XTRA's multi-game code, spec B2)."""
    policy_mask = None
    if legal_softmax:
        policy_mask = torch.zeros(len(sample), policy_size, dtype=torch.bool)
        policy_mask[:, torch.as_tensor(np.asarray(legal_actions))] = True
        policy_mask = policy_mask.to(device)
    return LearnBatch(
        obs=torch.as_tensor(sample.obs, device=device),
        actions=torch.as_tensor(sample.actions, device=device),
        mask=torch.as_tensor(sample.mask, device=device),
        targets=targets,
        weights=torch.as_tensor(sample.weights, device=device),
        policy_mask=policy_mask,
    )


def concat_batches(batches: Sequence[LearnBatch]) -> LearnBatch:
    """One LearnBatch from per-source ones; ``groups`` = source index. A single source is
    returned as it is (``groups`` None)."""
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


def slice_batch(batch: LearnBatch, rows: slice) -> LearnBatch:
    """The samples ``rows`` of ``batch`` (``task_weights`` kept whole: it is per source)."""
    return LearnBatch(
        obs=batch.obs[rows],
        actions=batch.actions[rows],
        mask=batch.mask[rows],
        targets=Targets(
            value=batch.targets.value[rows],
            value_prefix=batch.targets.value_prefix[rows],
            policy=batch.targets.policy[rows],
        ),
        weights=batch.weights[rows],
        policy_mask=None if batch.policy_mask is None else batch.policy_mask[rows],
        groups=None if batch.groups is None else batch.groups[rows],
        task_weights=batch.task_weights,
    )
