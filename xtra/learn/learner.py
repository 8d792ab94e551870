"""One SGD update of EfficientZero on a batch that may mix several sources (spec A7; Eq. 1).

The caller builds a :class:`LearnBatch` from any number of sources (online replay, offline
datasets), each with its own per-sample weights; :meth:`Learner.update` runs the unroll, combines
the per-sample losses, steps the optimiser and returns metrics and new priorities. The update has
no side effects on buffers: the caller writes priorities back.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from xtra.config import Config
from xtra.learn.loss import LossTerms, Targets, unroll_losses
from xtra.learn.schedules import learning_rate


@dataclass
class LearnBatch:
    """A training batch of B samples, K unroll steps, P = policy head size."""

    obs: torch.Tensor  # [B, S+K, C, H, W] uint8
    actions: torch.Tensor  # [B, K] int64 ids fed to the dynamics (ALE ids)
    mask: torch.Tensor  # [B, K+1] 1 where t+k is inside the trajectory
    targets: Targets
    weights: torch.Tensor  # [B] PER importance weights times task weights (Eq. 1)
    policy_mask: torch.Tensor | None = None  # [B, P] legal ids of each sample's game
    groups: torch.Tensor | None = None  # [B] source index, for per-source metrics and Eq. 1 means
    group_weights: torch.Tensor | None = None  # [G] eta_g used by loss_combination="eq1"


@dataclass
class UpdateResult:
    metrics: dict[str, float]
    priorities: torch.Tensor  # [B] |v_0 - z_0| + eps, on the CPU
    terms: LossTerms | None = field(default=None, repr=False)


def combine_losses(per_sample: torch.Tensor, batch: LearnBatch, mode: str) -> torch.Tensor:
    """The scalar objective from per-sample losses [B] (spec decision 3).

    ``mean``: one weighted mean over the combined batch, as the XTRA code does (B6).
    ``eq1``: Eq. 1 literally: sum over sources g of eta_g * mean over that source's samples of
    (PER weight * loss); the target source has eta = 1.
    """
    weighted = batch.weights * per_sample
    if mode == "mean" or batch.groups is None:
        return weighted.mean()
    num_groups = int(batch.groups.max().item()) + 1
    sums = torch.zeros(num_groups, device=weighted.device).index_add_(0, batch.groups, weighted)
    counts = torch.bincount(batch.groups, minlength=num_groups).clamp_min(1).to(weighted.dtype)
    eta = (
        batch.group_weights
        if batch.group_weights is not None
        else torch.ones(num_groups, device=weighted.device)
    )
    return (eta * sums / counts).sum()


class Learner:
    """Owns the optimiser, AMP scaler and learning-rate schedule of one model."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: Config,
        device: torch.device,
        parameters: list[torch.nn.Parameter] | None = None,
    ):
        self.model = model
        self.cfg = cfg
        self.device = device
        o = cfg.optim
        params = (
            parameters
            if parameters is not None
            else [p for p in model.parameters() if p.requires_grad]
        )
        self.optimizer = torch.optim.SGD(
            params, lr=0.0, momentum=o.momentum, weight_decay=o.weight_decay
        )
        self.amp = o.amp == "on" or (o.amp == "auto" and device.type == "cuda")
        self.amp_dtype = (
            torch.bfloat16
            if (device.type == "cpu" or torch.cuda.is_bf16_supported())
            else torch.float16
        )
        # bf16 needs no loss scaling; fp16 does.
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.generator = torch.Generator().manual_seed(cfg.seed + 7)

    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        return learning_rate(
            step,
            lr=o.lr,
            warmup_steps=o.warmup_steps,
            decay_steps=o.lr_decay_steps,
            decay_rate=o.lr_decay_rate,
        )

    def autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def losses(self, batch: LearnBatch) -> LossTerms:
        """Per-sample losses in train mode (used by :meth:`update` and by task-weight measurement)."""
        c = self.cfg
        self.model.train()
        with self.autocast():
            return unroll_losses(
                self.model,
                batch.obs,
                batch.actions,
                batch.mask,
                batch.targets,
                policy_mask=batch.policy_mask,
                support_size=c.model.support_size,
                transform_eps=c.model.transform_eps,
                faithful_transform=c.model.faithful_transform,
                value_coeff=c.optim.value_coeff,
                policy_coeff=c.optim.policy_coeff,
                consistency_coeff=c.optim.consistency_coeff,
                reward_coeff=c.optim.reward_coeff,
                latent_grad_scale=c.optim.latent_grad_scale,
                lstm_horizon=c.search.lstm_horizon,
                loss_masks=c.optim.loss_masks,
                augment_shift=c.optim.augment_shift,
                augment_intensity=c.optim.augment_intensity,
                generator=self.generator,
            )

    def update(self, batch: LearnBatch, step: int) -> UpdateResult:
        """One SGD step (spec A7 steps 3-7): unroll -> losses -> step -> metrics."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        # Unroll and losses
        terms = self.losses(batch)
        loss = combine_losses(terms.total, batch, self.cfg.transfer.loss_combination)

        # Update: the gradient is scaled by 1/K (EZ's hook on the loss), then clipped to norm 5.
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss / batch.actions.shape[1]).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

        # Metrics and priorities
        z0 = batch.targets.value[:, 0].float()
        priorities = (terms.value_k0 - z0).abs().add_(self.cfg.replay.priority_eps).detach().cpu()
        metrics = {
            "loss/total": float(loss.item()),
            "loss/value": float(terms.value.mean().item()),
            "loss/policy": float(terms.policy.mean().item()),
            "loss/value_prefix": float(terms.value_prefix.mean().item()),
            "loss/consistency": float(terms.consistency.mean().item()),
            "train/lr": lr,
            "train/grad_norm": float(grad_norm.item()),
            "train/value_k0": float(terms.value_k0.mean().item()),
            "train/target_value_k0": float(z0.mean().item()),
        }
        return UpdateResult(metrics=metrics, priorities=priorities, terms=terms)

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
