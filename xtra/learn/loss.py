"""EfficientZero's training objective (paper App. A Eq. 3; spec A7), per sample.

The unroll reads top to bottom like the spec: represent the augmented stacked observation, predict
policy and value at k=0, then K times: dynamics (value prefix), predict, consistency against the
representation of the real next observation. Every term is returned per sample so the caller can
apply PER weights, task weights (Eq. 1) and masks without re-running anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xtra.learn.augment import augment
from xtra.learn.batch import Targets
from xtra.model.transforms import logits_to_scalar, scalar_to_logits_target


@dataclass(frozen=True)
class LossSettings:
    """The constants of the objective (spec A7): everything :func:`unroll_losses` needs besides
    the batch, as keyword arguments (``**vars(settings)``)."""

    support_size: int
    transform_eps: float
    faithful_transform: bool
    value_coeff: float
    policy_coeff: float
    consistency_coeff: float
    reward_coeff: float
    latent_grad_scale: float
    lstm_horizon: int
    loss_masks: bool
    augment_shift: int
    augment_intensity: float
    predict_consistency_targets: bool = False


@dataclass
class LossTerms:
    """Per-sample losses [B] (already masked and summed over k) and the k=0 value prediction."""

    value: torch.Tensor
    policy: torch.Tensor
    value_prefix: torch.Tensor
    consistency: torch.Tensor
    total: torch.Tensor  # coefficient-weighted sum of the four terms, [B]
    value_k0: torch.Tensor  # [B] scalar prediction at k=0 (detached), for PER priorities


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through ``x`` is multiplied by ``scale`` (spec A7.4)."""
    return x * scale + x.detach() * (1.0 - scale)


def categorical_ce(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """-sum_i p_i log softmax(logits)_i over the last axis; computed in float32. Returns [...]."""
    return -(target_probs.float() * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def consistency_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity (SimSiam; spec A7.4): -cos(pred, stopgrad(target)), [B].

    L2 normalisation with eps 1e-5 as in the reference.
    """
    p = F.normalize(prediction.float(), p=2.0, dim=-1, eps=1e-5)
    z = F.normalize(target.detach().float(), p=2.0, dim=-1, eps=1e-5)
    return -(p * z).sum(-1)


def unroll_losses(
    model,
    obs: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    targets: Targets,
    *,
    policy_mask: torch.Tensor | None,
    support_size: int,
    transform_eps: float,
    faithful_transform: bool,
    value_coeff: float,
    policy_coeff: float,
    consistency_coeff: float,
    reward_coeff: float,
    latent_grad_scale: float,
    lstm_horizon: int,
    loss_masks: bool,
    augment_shift: int,
    augment_intensity: float,
    predict_consistency_targets: bool = False,
    generator: torch.Generator | None = None,
) -> LossTerms:
    """Per-sample EfficientZero losses for one batch (spec A7 steps 1-5).

    obs [B, S+K, C, H, W] uint8 frames t..t+S+K-1; actions [B, K] ids fed to g (ALE ids);
    mask [B, K+1] with mask[:, k] = 1 iff t+k is inside the trajectory; policy_mask [B, P] bool of
    legal ids (None = all P logits take part in the softmax, as XTRA's multi-task code does, B2).
    ``predict_consistency_targets``: also run f on the target latents (outputs unused) so that
    f's BatchNorm running statistics see representation latents, as EZ's initial_inference does.
    """
    b, t_len, c, h, w = obs.shape
    k_steps = actions.shape[1]
    s = t_len - k_steps
    x = obs.float().div_(255.0)
    # Two independent augmentations, one for s_t and one for all later frames (A7.1).
    x0 = augment(
        x[:, :s].reshape(b, s * c, h, w),
        shift=augment_shift,
        intensity=augment_intensity,
        generator=generator,
    )
    xt = augment(
        x[:, 1:].reshape(b, (t_len - 1) * c, h, w),
        shift=augment_shift,
        intensity=augment_intensity,
        generator=generator,
    )

    def target_dist(values: torch.Tensor) -> torch.Tensor:
        return scalar_to_logits_target(
            values, support_size, transform_eps, faithful=faithful_transform
        )

    def policy_ce(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if policy_mask is not None:
            # Softmax over the game's legal ids only: for one game this is EZ's A-way head exactly.
            logits = logits.float().masked_fill(~policy_mask, -1e9)
        return categorical_ce(logits, probs)

    value_target = target_dist(targets.value)  # [B, K+1, 2S+1]
    vp_target = target_dist(targets.value_prefix)  # [B, K, 2S+1]

    # Consistency targets: representations of the real observations o_{t+1..t+K}, no gradient.
    with torch.no_grad():
        frames_k = torch.stack(
            [xt[:, (k - 1) * c : (k - 1 + s) * c] for k in range(1, k_steps + 1)], dim=1
        )
        target_latents = model.represent(frames_k.reshape(b * k_steps, s * c, h, w))
        target_proj = model.project(target_latents, with_grad=False).view(b, k_steps, -1)
        if predict_consistency_targets:
            model.predict(target_latents)

    # ---- k = 0
    latent = model.represent(x0)
    policy_logits, value_logits = model.predict(latent)
    loss_value = categorical_ce(value_logits, value_target[:, 0])
    loss_policy = policy_ce(policy_logits, targets.policy[:, 0])
    value_k0 = logits_to_scalar(value_logits.detach().float(), support_size, transform_eps)
    loss_vp = torch.zeros(b, device=obs.device)
    loss_cons = torch.zeros(b, device=obs.device)
    lstm = model.initial_lstm_state(b, obs.device)

    # ---- k = 1..K
    for k in range(1, k_steps + 1):
        # Position t+k is scored while the action that leads to it, a_{t+k-1}, was real (EZ HEAD masks).
        m = mask[:, k - 1].float()
        m_pred = m if loss_masks else torch.ones_like(m)  # D-XT-3: XTRA's code has no masks here
        latent, lstm, vp_logits = model.dynamics(latent, lstm, actions[:, k - 1])
        latent = scale_gradient(latent, latent_grad_scale)
        policy_logits, value_logits = model.predict(latent)
        loss_vp = loss_vp + m_pred * categorical_ce(vp_logits, vp_target[:, k - 1])
        loss_value = loss_value + m_pred * categorical_ce(value_logits, value_target[:, k])
        loss_policy = loss_policy + m_pred * policy_ce(policy_logits, targets.policy[:, k])
        loss_cons = loss_cons + m * consistency_loss(
            model.project(latent, with_grad=True), target_proj[:, k - 1]
        )
        if k % lstm_horizon == 0:
            lstm = model.initial_lstm_state(b, obs.device)

    total = (
        reward_coeff * loss_vp
        + policy_coeff * loss_policy
        + value_coeff * loss_value
        + consistency_coeff * loss_cons
    )
    return LossTerms(
        value=loss_value,
        policy=loss_policy,
        value_prefix=loss_vp,
        consistency=loss_cons,
        total=total,
        value_k0=value_k0,
    )


def multitask_objective(
    per_sample: torch.Tensor,
    weights: torch.Tensor,
    groups: torch.Tensor | None,
    task_weights: torch.Tensor | None,
    mode: str,
) -> torch.Tensor:
    """Eq. 1: the scalar loss of a batch that mixes sources, from per-sample losses [B].

    ``weights`` [B]: PER importance weights; ``groups`` [B]: source index of each sample (None:
    one source); ``task_weights`` [G]: eta of each source (None: all 1; the target's is 1).

    ``mode="mean"``: one mean over the combined batch of eta_g(i) * w_i * loss_i, as XTRA's
    code does (spec B6, B7.3). ``mode="eq1"``: Eq. 1 literally, sum over sources g of
    eta_g * the mean over g's samples of w_i * loss_i. With one source both are EfficientZero's
    PER-weighted mean (Eq. 3).
    """
    if groups is None:
        return (weights * per_sample).mean()
    if mode == "mean":
        if task_weights is not None:
            weights = weights * task_weights.to(weights.device, weights.dtype)[groups]
        return (weights * per_sample).mean()
    weighted = weights * per_sample
    num_groups = int(groups.max().item()) + 1
    sums = torch.zeros(num_groups, device=weighted.device).index_add_(0, groups, weighted)
    counts = torch.bincount(groups, minlength=num_groups).clamp_min(1).to(weighted.dtype)
    eta = (
        task_weights.to(weighted.device, weighted.dtype)
        if task_weights is not None
        else torch.ones(num_groups, device=weighted.device)
    )
    return (eta * sums / counts).sum()
