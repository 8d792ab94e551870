"""Run the batched search with a network: the one code path for acting, evaluation and reanalysis.

Self-play, evaluation and reanalysis all do the same thing — initial inference on a batch of
stacked observations, slice the 18-way policy to each root's legal ALE ids, search — and differ
only in the network (acting, final or target), the noise and what they read from the result.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from xtra.config import Config
from xtra.model.networks import legal_logits
from xtra.search import SearchResult, search, search_kwargs


@dataclass
class PlanResult:
    """Search output for N roots with A action slots."""

    visit_counts: np.ndarray  # [N, A] int64
    visit_policy: np.ndarray  # [N, A] float64, normalised visits
    root_values: np.ndarray  # [N] float64, search value W/N of the root
    network_values: np.ndarray  # [N] float32, the network's value of the root state
    prior_logits: np.ndarray | None = None  # [N, A] float32, the policy head over the legal slots


def legal_slots(legal_actions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ALE ids [A] (one game) or [N, A] padded with -1 -> (action_ids [N, A] int64, legal mask [N, A])."""
    legal_actions = np.asarray(legal_actions, dtype=np.int64)
    if legal_actions.ndim == 1:
        legal_actions = np.broadcast_to(legal_actions, (n, legal_actions.shape[0]))
    mask = legal_actions >= 0
    return np.where(mask, legal_actions, 0), mask


class Planner:
    """Searches with ``model`` (in eval mode, no gradients) on the model's device."""

    def __init__(
        self, model: torch.nn.Module, cfg: Config, device: torch.device, amp: bool = False
    ):
        self.model = model
        self.device = device
        self.kwargs = search_kwargs(cfg.search, cfg.discount)
        self.amp = amp

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        dtype = (
            torch.bfloat16
            if self.device.type == "cpu" or torch.cuda.is_bf16_supported()
            else torch.float16
        )
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.no_grad()
    def root_inference(self, obs: np.ndarray | torch.Tensor):
        """Initial inference on stacked observations [N, S*C, H, W] uint8."""
        self.model.eval()
        x = torch.as_tensor(obs, device=self.device)
        with self._autocast():
            return self.model.initial_inference(x)

    def recurrent(self, latent, lstm_state, action_ids):
        with self._autocast():
            return self.model.recurrent_inference(latent, lstm_state, action_ids)

    @torch.no_grad()
    def plan(
        self,
        obs: np.ndarray | torch.Tensor,
        legal_actions: np.ndarray,
        *,
        add_noise: bool,
        rng: np.random.Generator,
        num_simulations: int | None = None,
    ) -> PlanResult:
        """Search from N observations. legal_actions: ALE ids [A], or [N, A] padded with -1."""
        out = self.root_inference(obs)
        n = out.value.shape[0]
        action_ids, legal_mask = legal_slots(legal_actions, n)
        kwargs = dict(self.kwargs)
        if num_simulations is not None:
            kwargs["num_simulations"] = num_simulations
        result: SearchResult = search(
            self.recurrent,
            out.latent,
            out.lstm_state,
            out.policy_logits.float(),
            legal_mask,
            action_ids,
            add_noise=add_noise,
            rng=rng,
            **kwargs,
        )
        return PlanResult(
            visit_counts=result.visit_counts,
            visit_policy=result.visit_policy,
            root_values=result.root_values,
            network_values=out.value.float().cpu().numpy(),
            prior_logits=legal_logits(out.policy_logits.float(), action_ids).cpu().numpy(),
        )
