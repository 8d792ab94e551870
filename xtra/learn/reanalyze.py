"""Reanalyze: training targets for a sampled batch, made with the target network (spec A6.4).

* value targets: n-step returns bootstrapped with the target network's value of s_{t+u+n}, with
  the off-policy TD length n = clip(5 - floor(age / 30000), 1, 5) chosen by the replay sampler;
* value-prefix targets: sums of the data's clipped rewards;
* policy targets: visit distributions of a fresh search with the target network (Dirichlet noise
  on, as EZ) for a ``reanalyze_ratio`` share of the samples, the stored self-play ones otherwise.

All positions of the batch go through one initial inference and one search, not a loop.
"""

from __future__ import annotations

import numpy as np
import torch

from xtra.act.planner import Planner
from xtra.actions import scatter_policy
from xtra.data.replay import ReplayBuffer, SampledBatch
from xtra.data.targets import n_step_value_targets, value_prefix_targets
from xtra.learn.batch import Targets
from xtra.search.improved_policy import completed_q_policy


def unrolled_obs(obs, frame_stack: int, unroll_steps: int):
    """Frames [B, S+K, C, H, W] -> stacked observations of s_{t+u} [B, K+1, S*C, H, W].

    numpy in, numpy out; a tensor stays a tensor on its device."""
    b, _, c, h, w = obs.shape
    if isinstance(obs, torch.Tensor):
        windows = obs.unfold(1, frame_stack, 1).permute(0, 1, 5, 2, 3, 4)  # [B, K+1, S, C, H, W]
    else:
        windows = np.stack([obs[:, u : u + frame_stack] for u in range(unroll_steps + 1)], axis=1)
    return windows.reshape(b, unroll_steps + 1, frame_stack * c, h, w)


def reanalyze(
    batch: SampledBatch,
    replay: ReplayBuffer,
    planner: Planner,
    rng: np.random.Generator,
    *,
    discount: float,
    lstm_horizon: int,
    policy_size: int,
    reanalyze_ratio: float,
    add_noise: bool = True,
    value_bootstrap: str = "network",
    policy_target: str = "visits",
) -> Targets:
    """Targets (numpy -> torch on the planner's device) for one sampled batch of one game.

    ``planner`` is the target network (EZ, teacher stage) or a frozen teacher (distillation,
    spec B10.3: ``add_noise=transfer.teacher_noise``, ``reanalyze_ratio=1.0``).
    ``reanalyze_ratio``: the share of samples (the first ones) whose policy targets come from a
    fresh search; the others keep the stored visit distributions. ``discount`` per agent step;
    ``lstm_horizon``: the value-prefix reset period; ``policy_size``: the policy head's width.
    ``value_bootstrap``: the value of s_{t+u+n} is the network's (``network``) or the root
    value of a search from it (``root``, EZ's use_root_value; one more search per batch).
    ``policy_target``: the reanalysed policy is the normalised visit counts (``visits``) or the
    completed-Q improved policy (``completed_q``, :mod:`xtra.search.improved_policy`).
    """
    b, u_len = batch.mask.shape
    s = replay.frame_stack
    legal = replay.action_ids
    valid = batch.mask > 0

    # Values: bootstrap states s_{t+u+n} through the target network.
    boot_values = np.zeros((b, u_len), dtype=np.float32)
    need = batch.bootstrap_valid > 0
    if need.any():
        traj = np.repeat(batch.traj_ids, u_len).reshape(b, u_len)[need]
        frames = replay.stacked_obs(traj, batch.bootstrap_positions[need])  # [M, S, C, H, W]
        obs = frames.reshape(frames.shape[0], -1, *frames.shape[3:])
        if value_bootstrap == "root":
            plan = planner.plan(obs, legal, add_noise=add_noise, rng=rng)
            boot_values[need] = plan.root_values
        else:
            out = planner.root_inference(obs)
            boot_values[need] = out.value.float().cpu().numpy()
    value = n_step_value_targets(
        batch.rewards,
        boot_values,
        batch.td_steps,
        batch.mask,
        batch.bootstrap_valid,
        discount=discount,
    )
    value_prefix = value_prefix_targets(batch.rewards, batch.mask, lstm_horizon=lstm_horizon)

    # Policies: one search over every real position of the reanalysed samples.
    policy = batch.root_visits * batch.mask[..., None]
    n_re = int(np.floor(b * reanalyze_ratio))
    if n_re > 0:
        # The windows overlap: move the S+K frames once and stack them on the device
        # (a third of the bytes of the K+1 stacked observations).
        frames = torch.as_tensor(batch.obs[:n_re], device=planner.device)
        obs_u = unrolled_obs(frames, s, u_len - 1)  # [n_re, U, S*C, H, W]
        sel = valid[:n_re]
        plan = planner.plan(
            obs_u[torch.as_tensor(sel, device=planner.device)], legal, add_noise=add_noise, rng=rng
        )
        fresh = np.zeros((n_re, u_len, len(legal)), dtype=np.float32)
        if policy_target == "completed_q":
            fresh[sel] = completed_q_policy(
                plan.prior_logits,
                plan.visit_counts,
                plan.child_q,
                plan.network_values,
                np.ones(plan.visit_counts.shape, dtype=bool),
            )
        else:
            fresh[sel] = plan.visit_policy
        policy = policy.copy()
        policy[:n_re] = fresh

    device = planner.device
    return Targets(
        value=torch.as_tensor(value, device=device),
        value_prefix=torch.as_tensor(value_prefix, device=device),
        policy=torch.as_tensor(scatter_policy(policy, legal, policy_size), device=device),
    )
