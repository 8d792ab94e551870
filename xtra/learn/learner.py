"""One SGD update of EfficientZero on a batch that may mix several sources (spec A7; Eq. 1).

The caller builds a :class:`~xtra.learn.batch.LearnBatch` from any number of sources;
:meth:`Learner.update` runs the unroll, combines the per-sample losses (Eq. 1,
:func:`~xtra.learn.loss.multitask_objective`), steps the optimiser and returns metrics and new
priorities. The update has no side effects on buffers: the caller writes priorities back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial

import torch

from xtra.device import amp_dtype, autocast
from xtra.learn.batch import LearnBatch, slice_batch
from xtra.learn.loss import LossSettings, LossTerms, multitask_objective, unroll_losses
from xtra.model.networks import frozen_running_stats


@dataclass
class UpdateResult:
    metrics: dict[str, float]
    priorities: torch.Tensor  # [B] |v_0 - z_0| + eps, on the CPU
    terms: LossTerms | None = field(default=None, repr=False)


class Learner:
    """Owns the optimiser, AMP scaler, augmentation generator and learning-rate schedule of one
    model.

    Args:
        model: the network trained (its parameters with ``requires_grad``, or ``parameters``).
        device: where batches live.
        loss: the objective's constants.
        lr_at: learning rate at a training step and a share of the run done
            (``xtra.learn.schedules.learning_rate``).
        momentum, weight_decay, max_grad_norm: SGD and clipping (spec A7).
        optimizer: ``sgd`` (EfficientZero's, with ``momentum``) or ``adam`` (PyTorch's Adam with
            its default betas and L2 ``weight_decay``; ``momentum`` unused).
        amp: autocast the forward pass (:mod:`xtra.device`); fp16 adds loss scaling.
        priority_eps: added to |v - z| to form a PER priority.
        loss_combination: ``mean`` or ``eq1`` (:func:`~xtra.learn.loss.multitask_objective`).
        seed: seeds the augmentation generator.
        separate_batchnorm: a batch of several sources goes through the network in two passes,
            source 0 (the target) and the rest, so BatchNorm normalises each with its own batch
            statistics and only the target's pass moves the running statistics that search uses.
            False: one pass over the whole batch (XTRA's code, spec B6).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        loss: LossSettings,
        lr_at: Callable[[int, float], float],
        momentum: float,
        weight_decay: float,
        max_grad_norm: float,
        amp: bool,
        priority_eps: float,
        loss_combination: str,
        seed: int,
        parameters: list[torch.nn.Parameter] | None = None,
        separate_batchnorm: bool = False,
        optimizer: str = "sgd",
    ):
        self.model = model
        self.device = device
        self.loss_settings = loss
        self.lr_at = lr_at
        self.max_grad_norm = max_grad_norm
        self.priority_eps = priority_eps
        self.loss_combination = loss_combination
        self.separate_batchnorm = separate_batchnorm
        params = (
            parameters
            if parameters is not None
            else [p for p in model.parameters() if p.requires_grad]
        )
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=0.0, weight_decay=weight_decay)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params, lr=0.0, momentum=momentum, weight_decay=weight_decay
            )
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.amp = amp
        self.amp_dtype = amp_dtype(device)
        self.autocast = partial(autocast, device, amp)
        # bf16 needs no loss scaling; fp16 does.
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.generator = torch.Generator().manual_seed(seed)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimiser trains."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def losses(self, batch: LearnBatch) -> LossTerms:
        """Per-sample losses in train mode (used by :meth:`update` and by task-weight measurement)."""
        self.model.train()
        if not self.separate_batchnorm or batch.groups is None:
            return self._unroll(batch)
        n = int((batch.groups == 0).sum().item())  # source 0 comes first (concat_batches)
        target = self._unroll(slice_batch(batch, slice(0, n)))
        with frozen_running_stats(self.model):
            offline = self._unroll(slice_batch(batch, slice(n, None)))
        return LossTerms(
            **{f.name: torch.cat([getattr(target, f.name), getattr(offline, f.name)])
               for f in fields(LossTerms)}
        )  # fmt: skip

    def _unroll(self, batch: LearnBatch) -> LossTerms:
        with self.autocast():
            return unroll_losses(
                self.model,
                batch.obs,
                batch.actions,
                batch.mask,
                batch.targets,
                policy_mask=batch.policy_mask,
                generator=self.generator,
                **vars(self.loss_settings),
            )

    def update(self, batch: LearnBatch, step: int, progress: float = 0.0) -> UpdateResult:
        """One SGD step (spec A7 steps 3-7): unroll -> losses -> step -> metrics. ``progress``:
        the share of the run done, in [0, 1] (for ``optim.lr_schedule=cosine``)."""
        lr = self.lr_at(step, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        # Unroll and losses (Eq. 3 per sample, Eq. 1 over the sources)
        terms = self.losses(batch)
        loss = multitask_objective(
            terms.total, batch.weights, batch.groups, batch.task_weights, self.loss_combination
        )

        # Update: the gradient is scaled by 1/K (EZ's hook on the loss), then clipped to norm 5.
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss / batch.actions.shape[1]).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

        # Metrics and priorities
        z0 = batch.targets.value[:, 0].float()
        priorities = (terms.value_k0 - z0).abs().add_(self.priority_eps).detach().cpu()
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
