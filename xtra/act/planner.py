"""Run the batched search with a network: the one code path for acting, evaluation and reanalysis.

Self-play, evaluation and reanalysis all do the same thing — initial inference on a batch of
stacked observations, slice the 18-way policy to each root's legal ALE ids, search — and differ
only in the network (acting, final or target), the noise and what they read from the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from xtra.actions import legal_slots
from xtra.device import autocast
from xtra.model.networks import NetworkOutput, legal_logits
from xtra.search import SearchResult, search


@dataclass
class PlanResult:
    """Search output for N roots with A action slots."""

    visit_counts: np.ndarray  # [N, A] int64
    visit_policy: np.ndarray  # [N, A] float64, normalised visits
    root_values: np.ndarray  # [N] float64, search value W/N of the root
    network_values: np.ndarray  # [N] float32, the network's value of the root state
    prior_logits: np.ndarray | None = None  # [N, A] float32, the policy head over the legal slots
    child_q: np.ndarray | None = None  # [N, A] float64, Q of each visited root child (0 elsewhere)


def graph_bucket(batch: int) -> int:
    """Batch size a CUDA graph is captured for: powers of two up to 256, then multiples of 256.

    Reanalysis searches a varying number of roots; rounding up bounds the number of graphs (and
    their memory) while padding at most half of a small batch and 255 rows of a large one."""
    if batch <= 256:
        return 1 << max(batch - 1, 0).bit_length()
    return -(-batch // 256) * 256


class GraphedRecurrent:
    """``model.recurrent_inference`` replayed from CUDA graphs, one per :func:`graph_bucket`.

    The search calls the network once per simulation on a few thousand rows at most, so on a GPU
    its time is mostly the launch of ~60 small kernels; a graph launches them at once. Inputs
    are copied into the graph's static buffers (padding rows are zeros: every layer treats rows
    independently in eval mode) and the outputs are views of its static outputs, valid until the
    next call. The graph reads the parameters in place, so ``load_state_dict`` on the model is
    seen by later calls; replacing a parameter tensor is not (no code here does).
    """

    def __init__(self, model: torch.nn.Module, autocast):
        self.model = model
        self.autocast = autocast
        self.graphs: dict[int, tuple] = {}

    def _eager(self, latent, h, c, action_ids):
        with self.autocast(cache=False):
            out = self.model.recurrent_inference(latent, (h, c), action_ids)
        return (
            out.latent,
            out.lstm_state[0],
            out.lstm_state[1],
            out.value_prefix,
            out.value,
            out.value_logits,
            out.policy_logits,
        )

    def _capture(self, bucket: int, latent, h, c, action_ids) -> tuple:
        inputs = (
            torch.zeros((bucket, *latent.shape[1:]), dtype=latent.dtype, device=latent.device),
            torch.zeros((h.shape[0], bucket, h.shape[2]), dtype=h.dtype, device=h.device),
            torch.zeros((c.shape[0], bucket, c.shape[2]), dtype=c.dtype, device=c.device),
            torch.zeros(bucket, dtype=action_ids.dtype, device=action_ids.device),
        )
        # Warm-up on a side stream first (cuDNN picks its algorithms outside the capture).
        stream = torch.cuda.Stream(latent.device)
        stream.wait_stream(torch.cuda.current_stream(latent.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._eager(*inputs)
        torch.cuda.current_stream(latent.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._eager(*inputs)
        return graph, inputs, outputs

    def __call__(self, latent, lstm_state, action_ids) -> NetworkOutput:
        h, c = lstm_state
        batch = latent.shape[0]
        bucket = graph_bucket(batch)
        if bucket not in self.graphs:
            self.graphs[bucket] = self._capture(bucket, latent, h, c, action_ids)
        graph, inputs, outputs = self.graphs[bucket]
        inputs[0][:batch].copy_(latent)
        inputs[1][:, :batch].copy_(h)
        inputs[2][:, :batch].copy_(c)
        inputs[3][:batch].copy_(action_ids)
        graph.replay()
        nl, nh, nc, vp, v, vl, pl = outputs
        return NetworkOutput(
            latent=nl[:batch],
            lstm_state=(nh[:, :batch], nc[:, :batch]),
            value_prefix=vp[:batch],
            value=v[:batch],
            value_logits=vl[:batch],
            policy_logits=pl[:batch],
        )


class Planner:
    """Searches with ``model`` (in eval mode, no gradients) on ``device``.

    ``search_kwargs``: the keyword arguments of :func:`xtra.search.search` other than the
    inputs, noise switch and rng (``xtra.search.search_kwargs(cfg.search, discount)``).
    ``amp``: autocast the network calls (:mod:`xtra.device`). ``cuda_graphs``: on CUDA, replay the
    recurrent step from CUDA graphs (:class:`GraphedRecurrent`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        search_kwargs: Mapping[str, Any],
        amp: bool = False,
        cuda_graphs: bool = True,
    ):
        self.model = model
        self.device = device
        self.kwargs = dict(search_kwargs)
        self.amp = amp
        self._autocast = partial(autocast, device, amp)
        self.graphed = (
            GraphedRecurrent(model, self._autocast)
            if cuda_graphs and device.type == "cuda"
            else None
        )

    @torch.no_grad()
    def root_inference(self, obs: np.ndarray | torch.Tensor):
        """Initial inference on stacked observations [N, S*C, H, W] uint8."""
        self.model.eval()
        x = torch.as_tensor(obs, device=self.device)
        with self._autocast():
            return self.model.initial_inference(x)

    def recurrent(self, latent, lstm_state, action_ids):
        """One search step; outputs may be views that the next call overwrites."""
        if self.graphed is not None:
            return self.graphed(latent, lstm_state, action_ids)
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
    ) -> PlanResult:
        """Search from N observations. legal_actions: ALE ids [A], or [N, A] padded with -1."""
        out = self.root_inference(obs)
        n = out.value.shape[0]
        action_ids, legal_mask = legal_slots(legal_actions, n)
        result: SearchResult = search(
            self.recurrent,
            out.latent,
            out.lstm_state,
            out.policy_logits.float(),
            legal_mask,
            action_ids,
            add_noise=add_noise,
            rng=rng,
            **self.kwargs,
        )
        return PlanResult(
            visit_counts=result.visit_counts,
            visit_policy=result.visit_policy,
            root_values=result.root_values,
            network_values=out.value.float().cpu().numpy(),
            prior_logits=legal_logits(out.policy_logits.float(), action_ids).cpu().numpy(),
            child_q=result.child_q,
        )
