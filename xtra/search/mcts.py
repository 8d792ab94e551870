"""Batched EfficientZero MCTS: the driver loop around the compiled tree kernels (spec A5).

Per simulation: :func:`~xtra.search.tree.simulate` picks a leaf edge for every root (numba),
the model expands all ``B`` leaves in one ``recurrent_fn`` call, and
:func:`~xtra.search.tree.expand_and_backward` stores and backs up its outputs (numba).

Latent and LSTM states never leave the model's device: they live in node-major pools
``[(S + 1) * B, ...]`` (row ``node * B + b``), so simulation ``s`` writes one contiguous slice and
reads the parents with one ``index_select``. Per simulation only ``[2, B]`` int64 (parent rows,
action ids) go to the device (plus a ``[B]`` mask when some new node needs an LSTM reset) and one
``[B, 2 + P]`` float tensor (value prefix, value, policy logits) comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch

from xtra.search.tree import (
    SEL_ACTION_ID,
    SEL_POOL_ROW,
    SEL_RESET,
    expand_and_backward,
    expand_and_simulate,
    make_tree,
    prepare_roots,
    simulate,
)

PARALLEL_MIN_ROOTS = 128
"""With ``parallel=None``, numba threads are used from this many roots (a launch costs ~5 us)..."""
PARALLEL_MIN_THREADS = 4
"""... and only when numba has at least this many threads. OpenMP workers spin-wait between
kernels, and a fork-join per simulation waits a scheduler time slice whenever another process
holds a core: on a busy 2-core machine that made a 256-root search ~50x slower, while the idle
gain is under 2x. On a 2-core machine that is otherwise idle, pass ``parallel=True``."""

RecurrentFn = Callable[..., Any]
"""``recurrent_fn(latent [B, ...], (h [1, B, H], c [1, B, H]), action_ids [B] int64)`` returning
either a tuple ``(latent, (h, c), value_prefix [B], value [B], policy_logits [B, P])`` or an
object with those attributes (``latent``, ``lstm_state``, ``value_prefix``, ``value``,
``policy_logits``), e.g. the model's ``NetworkOutput``. Scalars must already be scalars (eval mode,
spec A3.6), not categorical logits. ``[B, 1]`` value tensors are accepted."""


@dataclass
class SearchResult:
    """Output of :func:`search`.

    Attributes:
        visit_counts: [B, A] int64, visits of the root's children (sum = num_simulations; 0 on
            illegal slots).
        root_values: [B] float64, W_root / N_root = sum of simulation returns / (S + 1) (D-EZ-3).
        visit_policy: [B, A] float64, visit_counts normalised per root (0 on illegal slots).
    """

    visit_counts: np.ndarray
    root_values: np.ndarray
    visit_policy: np.ndarray


@dataclass(frozen=True)
class SearchRandomness:
    """Every random number one search consumes, drawn up front (style 6).

    Attributes:
        noise: [B, A] float64 Dirichlet(alpha) sample over each root's legal slots (0 elsewhere),
            or None when no noise is added.
        tie_keys: [S, B] uint64 tie-break keys (see ``tree.splitmix64``), or None for
            ``tie_break="lowest"``.
    """

    noise: np.ndarray | None
    tie_keys: np.ndarray | None


def draw_randomness(
    rng: np.random.Generator,
    legal_mask: np.ndarray,
    *,
    num_simulations: int,
    add_noise: bool,
    dirichlet_alpha: float,
    tie_break: str,
) -> SearchRandomness:
    """Draw the root noise, then the tie-break keys, from ``rng`` (in that order).

    Dirichlet noise over a root's legal slots is sampled as normalised Gamma(alpha, 1) draws
    (``[B, A]`` at once; illegal slots are drawn and discarded).
    """
    legal = np.asarray(legal_mask, dtype=bool)
    noise = None
    if add_noise:
        gamma = np.where(legal, rng.standard_gamma(dirichlet_alpha, size=legal.shape), 0.0)
        total = gamma.sum(axis=1, keepdims=True)
        # A row of all-zero draws (alpha tiny, underflow) falls back to the uniform distribution.
        uniform = legal / np.maximum(legal.sum(axis=1, keepdims=True), 1)
        noise = np.where(total > 0, gamma / np.where(total > 0, total, 1.0), uniform)
    tie_keys = None
    if tie_break == "random":
        tie_keys = rng.integers(
            0,
            np.iinfo(np.uint64).max,
            size=(num_simulations, legal.shape[0]),
            dtype=np.uint64,
            endpoint=True,
        )
    elif tie_break != "lowest":
        raise ValueError(f"tie_break={tie_break!r}: use 'random' or 'lowest'")
    return SearchRandomness(noise=noise, tie_keys=tie_keys)


def search(
    recurrent_fn: RecurrentFn,
    root_latent: torch.Tensor,
    root_lstm_state: tuple[torch.Tensor, torch.Tensor],
    root_logits: torch.Tensor | np.ndarray,
    legal_mask: np.ndarray,
    action_ids: np.ndarray,
    *,
    num_simulations: int,
    c1: float,
    c2: float,
    discount: float,
    value_delta_max: float,
    lstm_horizon: int,
    tie_break: str,
    dirichlet_alpha: float,
    exploration_fraction: float,
    add_noise: bool,
    rng: np.random.Generator,
    faithful_minmax_parent: bool = False,
    faithful_parent_q_leak: bool = False,
    parallel: bool | None = None,
) -> SearchResult:
    """Run EfficientZero's MCTS from ``B`` roots at once (spec A5).

    Args:
        recurrent_fn: the dynamics + prediction call (see :data:`RecurrentFn`); called once per
            simulation with all ``B`` leaves, under ``torch.no_grad()``.
        root_latent: [B, ...] root latent states, on the model's device.
        root_lstm_state: (h, c), each [1, B, H] (any number of layers), the roots' value-prefix
            LSTM state.
        root_logits: [B, P] root policy logits over the model's policy head.
        legal_mask: [B, A] bool, legal action slots of each root (rows may differ; each needs at
            least one legal slot). Illegal slots get no visits.
        action_ids: [B, A] int, the action id passed to the model for each slot (e.g. the ALE
            id); also indexes the policy logits: slot priors are ``logits[b, action_ids[b, a]]``.
        num_simulations: S >= 1.
        c1, c2: pUCT constants (1.25, 19652).
        discount: gamma per agent step (``env.discount``; paper 0.997^4).
        value_delta_max: floor on the min-max range (0.01).
        lstm_horizon: zeta; the LSTM state is zeroed at depths divisible by it (5).
        tie_break: "random" (seeded from ``rng``, EZ) or "lowest" slot.
        dirichlet_alpha, exploration_fraction: root noise (0.3, 0.25), used if ``add_noise``.
        add_noise: mix Dirichlet noise into the root priors (self-play, reanalysis).
        rng: consumed: noise first, then tie-break keys (see :func:`draw_randomness`).
        faithful_minmax_parent: reproduce D-EZ-1.
        faithful_parent_q_leak: reproduce D-EZ-2.
        parallel: run the tree kernels on numba's threads (prange over roots); None: when
            B >= PARALLEL_MIN_ROOTS and numba has >= PARALLEL_MIN_THREADS threads. The result
            does not depend on it.

    Returns:
        :class:`SearchResult` with host numpy arrays.
    """
    randomness = draw_randomness(
        rng,
        legal_mask,
        num_simulations=num_simulations,
        add_noise=add_noise,
        dirichlet_alpha=dirichlet_alpha,
        tie_break=tie_break,
    )
    return search_with_randomness(
        recurrent_fn,
        root_latent,
        root_lstm_state,
        root_logits,
        legal_mask,
        action_ids,
        randomness,
        num_simulations=num_simulations,
        c1=c1,
        c2=c2,
        discount=discount,
        value_delta_max=value_delta_max,
        lstm_horizon=lstm_horizon,
        exploration_fraction=exploration_fraction,
        faithful_minmax_parent=faithful_minmax_parent,
        faithful_parent_q_leak=faithful_parent_q_leak,
        parallel=parallel,
    )


@torch.no_grad()
def search_with_randomness(
    recurrent_fn: RecurrentFn,
    root_latent: torch.Tensor,
    root_lstm_state: tuple[torch.Tensor, torch.Tensor],
    root_logits: torch.Tensor | np.ndarray,
    legal_mask: np.ndarray,
    action_ids: np.ndarray,
    randomness: SearchRandomness,
    *,
    num_simulations: int,
    c1: float,
    c2: float,
    discount: float,
    value_delta_max: float,
    lstm_horizon: int,
    exploration_fraction: float,
    faithful_minmax_parent: bool = False,
    faithful_parent_q_leak: bool = False,
    parallel: bool | None = None,
) -> SearchResult:
    """:func:`search` with its random numbers given (for replaying a search exactly in tests)."""
    legal, ids = _check_inputs(root_latent, root_lstm_state, root_logits, legal_mask, action_ids)
    if legal.shape[0] == 0:  # no roots
        empty = np.zeros(legal.shape)
        return SearchResult(empty.astype(np.int64), np.zeros(0), empty)
    if num_simulations < 1:
        raise ValueError(f"num_simulations={num_simulations} must be >= 1")
    if lstm_horizon < 1:
        raise ValueError(f"lstm_horizon={lstm_horizon} must be >= 1")
    batch, num_slots = legal.shape
    num_nodes = num_simulations + 1
    device = root_latent.device

    tree = make_tree(legal, ids, num_simulations)
    prepare_roots(tree, _to_numpy(root_logits), randomness.noise, exploration_fraction)
    tie_random = randomness.tie_keys is not None
    tie_keys = randomness.tie_keys if tie_random else np.zeros((num_simulations, batch), np.uint64)

    # Node-major pools on the model's device, row node * B + b: simulation s fills the slice
    # [(s + 1) B, (s + 2) B) (views made once here). LSTM pools are [L, N * B, H] like (h, c).
    h0, c0 = root_lstm_state
    latent_pool = root_latent.new_empty((num_nodes * batch, *root_latent.shape[1:]))
    h_pool = h0.new_empty((h0.shape[0], num_nodes * batch, *h0.shape[2:]))
    c_pool = c0.new_empty((c0.shape[0], num_nodes * batch, *c0.shape[2:]))
    latent_slices = latent_pool.split(batch)
    h_slices, c_slices = h_pool.split(batch, dim=1), c_pool.split(batch, dim=1)
    latent_slices[0].copy_(root_latent)
    h_slices[0].copy_(h0)
    c_slices[0].copy_(c0)
    selection = torch.from_numpy(tree.selection[SEL_POOL_ROW : SEL_ACTION_ID + 1])
    assert SEL_ACTION_ID == SEL_POOL_ROW + 1
    # The model's outputs for the new nodes, [B, 2 + P]: value prefix, value, policy logits;
    # gathered on the device by one cat and brought to the host as float64 in one copy
    # (buffers allocated at the first simulation, when the outputs' dtype is known).
    outputs_dev = outputs_t = outputs = None
    if parallel is None:
        threads = numba.config.NUMBA_NUM_THREADS  # (get_num_threads() would start the pool)
        parallel = batch >= PARALLEL_MIN_ROOTS and threads >= PARALLEL_MIN_THREADS

    select_kwargs = dict(
        c1=c1,
        c2=c2,
        discount=discount,
        value_delta_max=value_delta_max,
        lstm_horizon=lstm_horizon,
        tie_random=tie_random,
        parallel=parallel,
    )
    num_reset = simulate(
        tree, tie_keys[0], faithful_parent_q_leak=faithful_parent_q_leak, **select_kwargs
    )
    for sim in range(num_simulations):
        # A copy (also on CPU): the next kernel call rewrites tree.selection.
        sel = selection.to(device, copy=True)
        rows = sel[0]
        out = recurrent_fn(
            latent_pool.index_select(0, rows),
            (h_pool.index_select(1, rows), c_pool.index_select(1, rows)),
            sel[1],
        )
        latent, (h, c), value_prefix, value, policy_logits = _unpack(out)

        latent_slices[sim + 1].copy_(latent)
        h_slices[sim + 1].copy_(h)
        c_slices[sim + 1].copy_(c)
        if num_reset:  # spec A5 step 3: zero the LSTM state at depth % lstm_horizon == 0
            zero = torch.from_numpy(tree.selection[SEL_RESET] != 0).to(device)[None, :, None]
            h_slices[sim + 1].masked_fill_(zero, 0.0)
            c_slices[sim + 1].masked_fill_(zero, 0.0)

        if outputs is None:
            outputs_dev, outputs_t = _output_buffers(
                (value_prefix, value, policy_logits), batch, root_logits.shape[1], device
            )
            outputs = outputs_t.numpy()
        torch.cat(
            (value_prefix.reshape(batch, 1), value.reshape(batch, 1), policy_logits),
            dim=1,
            out=outputs_dev,
        )
        if outputs_t is not outputs_dev:
            outputs_t.copy_(outputs_dev)
        if sim + 1 < num_simulations:  # this simulation's expansion, the next one's selection
            num_reset = expand_and_simulate(
                tree,
                sim,
                outputs,
                tie_keys[sim + 1],
                faithful_minmax_parent=faithful_minmax_parent,
                faithful_parent_q_leak=faithful_parent_q_leak,
                **select_kwargs,
            )
        else:
            expand_and_backward(
                tree,
                sim,
                outputs,
                discount=discount,
                faithful_minmax_parent=faithful_minmax_parent,
                parallel=parallel,
            )

    visit_counts = tree.root_visit_counts()
    policy = visit_counts / visit_counts.sum(axis=1, keepdims=True)
    return SearchResult(
        visit_counts=visit_counts, root_values=tree.root_values(), visit_policy=policy
    )


def search_kwargs(cfg: Any, discount: float) -> dict[str, Any]:
    """Keyword arguments of :func:`search` from a ``SearchConfig`` and the run's discount."""
    return dict(
        num_simulations=cfg.num_simulations,
        c1=cfg.c1,
        c2=cfg.c2,
        discount=discount,
        value_delta_max=cfg.value_delta_max,
        lstm_horizon=cfg.lstm_horizon,
        tie_break=cfg.tie_break,
        dirichlet_alpha=cfg.dirichlet_alpha,
        exploration_fraction=cfg.exploration_fraction,
        faithful_minmax_parent=cfg.faithful_minmax_parent,
        faithful_parent_q_leak=cfg.faithful_parent_q_leak,
    )


def _output_buffers(
    tensors: tuple[torch.Tensor, ...], batch: int, policy_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(staging buffer on the device, float64 host buffer), both [B, 2 + P].

    On CPU the staging buffer has the outputs' dtype (a cat that converts to float64 costs
    twice as much as a cat plus a copy) and is the host buffer when that is float64; on CUDA
    the cat converts on the device and one copy brings the result to pinned host memory.
    """
    shape = (batch, 2 + policy_size)
    if device.type != "cpu":
        host = torch.empty(shape, dtype=torch.float64, pin_memory=True)
        return torch.empty(shape, dtype=torch.float64, device=device), host
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype == torch.float64:
        host = torch.empty(shape, dtype=torch.float64)
        return host, host
    return torch.empty(shape, dtype=torch.float32), torch.empty(shape, dtype=torch.float64)


def _unpack(out: Any) -> tuple:
    if isinstance(out, tuple):
        return out
    return out.latent, out.lstm_state, out.value_prefix, out.value, out.policy_logits


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _check_inputs(root_latent, root_lstm_state, root_logits, legal_mask, action_ids):
    legal = np.asarray(legal_mask, dtype=bool)
    ids = np.asarray(action_ids.cpu() if isinstance(action_ids, torch.Tensor) else action_ids)
    if legal.ndim != 2 or ids.shape != legal.shape:
        raise ValueError(f"legal_mask {legal.shape} and action_ids {ids.shape} must both be [B, A]")
    batch = legal.shape[0]
    if root_latent.shape[0] != batch or root_logits.shape[0] != batch:
        raise ValueError(
            f"root_latent {tuple(root_latent.shape)} and root_logits {tuple(root_logits.shape)}"
            f" must have B={batch} rows like legal_mask"
        )
    h0, c0 = root_lstm_state
    if h0.dim() != 3 or h0.shape[1] != batch or c0.dim() != 3 or c0.shape[1] != batch:
        raise ValueError(f"root_lstm_state must be two [layers, B={batch}, H] tensors")
    if batch and not legal.any(axis=1).all():
        raise ValueError(
            f"roots {np.flatnonzero(~legal.any(axis=1)).tolist()} have no legal action"
        )
    used = ids[legal]
    if used.size and (used.min() < 0 or used.max() >= root_logits.shape[1]):
        raise ValueError(
            f"legal action_ids must index the {root_logits.shape[1]} policy logits, "
            f"got range [{used.min()}, {used.max()}]"
        )
    return legal, ids
