"""Batched EfficientZero MCTS: the driver loop around the compiled tree kernels (spec A5).

Per simulation: :func:`~xtra.search.tree.simulate` picks a leaf edge for every root (numba),
the model expands all ``B`` leaves in one ``recurrent_fn`` call, and
:func:`~xtra.search.tree.expand_and_backward` stores and backs up its outputs (numba).

Latent and recurrent states never leave the model's device: they live in node-major pools
``[(S + 1) * B, ...]`` (row ``node * B + b``), so simulation ``s`` writes one contiguous slice and
reads the parents with one ``index_select``. On a GPU, per simulation only ``[2, B]`` int64
(parent rows, action ids) go to the device (plus a ``[B]`` mask when some new node needs an LSTM
reset) and one ``[B, 2 + P]`` float tensor (value prefix, value, policy logits) comes back. On
the CPU the pools, the kernels' selection and the float64 output buffer share memory (torch
views of numpy arrays), so a simulation costs a handful of small copies around the model call;
a numpy model gets numpy pools and no torch at all.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch

from xtra.search.tree import (
    SEL_ACTION_ID,
    SEL_DEPTH,
    SEL_PARENT,
    SEL_POOL_ROW,
    SEL_RESET,
    SEL_SLOT,
    Steps,
    make_tree,
    prepare_roots,
    reset_tree,
)

PARALLEL_MIN_ROOTS = 128
"""With ``parallel=None``, numba threads are used from this many roots (a launch costs ~5 us)..."""
PARALLEL_MIN_THREADS = 4
"""... and only when numba has at least this many threads. OpenMP workers spin-wait between
kernels, and a fork-join per simulation waits a scheduler time slice whenever another process
holds a core: on a busy 2-core machine that made a 256-root search ~50x slower, while the idle
gain is under 2x. On a 2-core machine that is otherwise idle, pass ``parallel=True``."""

# --------------------------------------------------------------------------- defaults

NUM_SIMULATIONS = 50
"""Simulations per search: EfficientZero ``config/atari`` ``num_simulations=50`` (paper Table 4)."""
C1 = 1.25
"""pUCT ``c1``: EfficientZero ``core/config.py`` ``pb_c_init`` (MuZero Appendix B)."""
C2 = 19652.0
"""pUCT ``c2``: EfficientZero ``core/config.py`` ``pb_c_base`` (MuZero Appendix B)."""
DISCOUNT = 0.997**4
"""Discount per tree edge (agent step): EfficientZero ``config/atari`` ``discount=0.997`` per
frame, raised to ``frame_skip=4`` (``self.discount **= self.frame_skip``) = 0.98805."""
VALUE_DELTA_MAX = 0.01
"""Floor of the min-max range that normalises Q: EfficientZero ``config/atari``."""
LSTM_HORIZON = 5
"""zeta: the recurrent state is zeroed at depths divisible by it: EfficientZero ``config/atari``
``lstm_horizon_len=5``. A model that predicts per-step rewards instead of value prefixes uses 1
(EfficientZero sets ``lstm_horizon_len = 1`` when ``use_value_prefix`` is off)."""
DIRICHLET_ALPHA = 0.3
"""Root noise: EfficientZero ``config/atari`` ``dirichlet_alpha=0.3``."""
EXPLORATION_FRACTION = 0.25
"""Weight of the root noise: EfficientZero ``core/config.py`` ``root_exploration_fraction``."""

RULES: dict[str, dict[str, Any]] = {
    "xtra": dict(tie_break="random", faithful_minmax_parent=False, faithful_parent_q_leak=False),
    "efficientzero": dict(
        tie_break="lowest", faithful_minmax_parent=True, faithful_parent_q_leak=True
    ),
}
"""What each ``rules=`` value sets, unless the argument is given explicitly.

* ``"xtra"``: EfficientZero's search with D-EZ-1 and D-EZ-2 fixed, ties broken at random from
  ``rng`` (seeded, reproducible).
* ``"efficientzero"``: EfficientZero HEAD as it is: D-EZ-1 (min-max statistics with the wrong
  parent value prefix) and D-EZ-2 (the root mean-Q leaking across roots) reproduced, and ties
  broken to the lowest slot. EfficientZero breaks ties with C ``rand()``, a stream that cannot
  be replayed; the lowest slot is the deterministic choice under which this search and
  EfficientZero's tree (with ``rand()`` returning 0) give the same visit counts.
"""

_UINT64_MAX = int(np.iinfo(np.uint64).max)

RecurrentFn = Callable[..., Any]
"""``recurrent_fn(latent [B, ...], state, action_ids [B] int64)``, or with a keyword
``context`` parameter ``recurrent_fn(latent, state, action_ids, context=SearchContext)``,
returning either a tuple ``(latent, state, value_prefix [B], value [B], policy_logits [B, P])``
(e.g. a :class:`RecurrentOutput`) or an object with those attributes (``latent``,
``lstm_state``, ``value_prefix``, ``value``, ``policy_logits``), e.g. the model's
``NetworkOutput``. ``state`` is the recurrent (value-prefix LSTM) state: a tuple of tensors
``[L, B, ...]`` like ``(h, c)``, or None when the search was given none (the returned state is
then ignored). Scalars must already be scalars (eval mode, spec A3.6), not categorical logits;
``[B, 1]`` value tensors are accepted. The arrays are torch tensors when the roots are, numpy
arrays when the roots are numpy arrays."""


class RecurrentOutput(tuple):
    """``(latent, state, value_prefix, value, policy_logits)``: what ``recurrent_fn`` returns."""

    __slots__ = ()

    def __new__(cls, latent, state, value_prefix, value, policy_logits):
        return super().__new__(cls, (latent, state, value_prefix, value, policy_logits))


@dataclass(frozen=True)
class SearchContext:
    """What a ``recurrent_fn`` with a ``context`` parameter is told about the nodes it expands.

    Row ``i`` of every call belongs to root ``i`` (all roots expand one node per simulation).

    Attributes:
        simulation: index s of this simulation (0 .. num_simulations - 1); the new nodes get
            node index s + 1 in their trees.
        num_simulations: S.
        root_index: [B] int64, the root of each row (``arange(B)``).
        depth: [B] int64, depth of each new node (edges from its root, >= 1).
        parent: [B] int64, node index of each new node's parent (0 = the root).
        slot: [B] int64, action slot taken from the parent (column of ``legal_mask``).
        reset: [B] bool, the new node's recurrent state is zeroed after this call
            (``depth % lstm_horizon == 0``); its children's rewards are their value prefixes.
    """

    simulation: int
    num_simulations: int
    root_index: np.ndarray
    depth: np.ndarray
    parent: np.ndarray
    slot: np.ndarray
    reset: np.ndarray


@dataclass
class SearchResult:
    """Output of :func:`search`.

    Attributes:
        visit_counts: [B, A] int64, visits of the root's children (sum = num_simulations; 0 on
            illegal slots).
        root_values: [B] float64, W_root / N_root = sum of simulation returns / (S + 1) (D-EZ-3).
        visit_policy: [B, A] float64, visit_counts normalised per root (0 on illegal slots).
        child_q: [B, A] float64, Q = r + gamma * W / N of each visited root child (0 where
            unvisited), for completed-Q policy targets (``xtra.search.improved_policy``).
    """

    visit_counts: np.ndarray
    root_values: np.ndarray
    visit_policy: np.ndarray
    child_q: np.ndarray | None = None


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


def resolve_rules(
    rules: str,
    *,
    tie_break: str | None = None,
    faithful_minmax_parent: bool | None = None,
    faithful_parent_q_leak: bool | None = None,
) -> dict[str, Any]:
    """``{tie_break, faithful_minmax_parent, faithful_parent_q_leak}`` of ``rules`` (see
    :data:`RULES`), each replaced by the argument of the same name when that is not None."""
    if rules not in RULES:
        raise ValueError(f"rules={rules!r}: use one of {sorted(RULES)}")
    given = dict(
        tie_break=tie_break,
        faithful_minmax_parent=faithful_minmax_parent,
        faithful_parent_q_leak=faithful_parent_q_leak,
    )
    return {k: RULES[rules][k] if v is None else v for k, v in given.items()}


def draw_randomness(
    rng: np.random.Generator | int | None,
    legal_mask: np.ndarray,
    *,
    num_simulations: int,
    add_noise: bool,
    dirichlet_alpha: float,
    tie_break: str,
) -> SearchRandomness:
    """Draw the root noise, then the tie-break keys, from ``rng`` (in that order).

    Dirichlet noise over a root's legal slots is sampled as normalised Gamma(alpha, 1) draws
    (``[B, A]`` at once; illegal slots are drawn and discarded). ``rng`` may also be a seed, or
    None for fresh entropy (only read when noise or random tie-breaks are asked for).
    """
    legal = np.asarray(legal_mask, dtype=bool)
    if tie_break not in ("random", "lowest"):
        raise ValueError(f"tie_break={tie_break!r}: use 'random' or 'lowest'")
    if (add_noise or tie_break == "random") and not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    noise = None
    if add_noise:
        gamma = rng.standard_gamma(dirichlet_alpha, size=legal.shape)
        gamma[~legal] = 0.0
        total = gamma.sum(axis=1, keepdims=True)
        if (total > 0).all():
            noise = gamma / total
        else:  # a row of all-zero draws (alpha tiny, underflow): the uniform distribution
            uniform = legal / np.maximum(legal.sum(axis=1, keepdims=True), 1)
            noise = np.where(total > 0, gamma / np.where(total > 0, total, 1.0), uniform)
    tie_keys = None
    if tie_break == "random":
        tie_keys = rng.integers(
            0,
            _UINT64_MAX,
            size=(num_simulations, legal.shape[0]),
            dtype=np.uint64,
            endpoint=True,
        )
    return SearchRandomness(noise=noise, tie_keys=tie_keys)


def search(
    recurrent_fn: RecurrentFn,
    root_latent: torch.Tensor | np.ndarray,
    root_lstm_state: Sequence[torch.Tensor | np.ndarray] | None = None,
    root_logits: torch.Tensor | np.ndarray | None = None,
    legal_mask: np.ndarray | None = None,
    action_ids: np.ndarray | None = None,
    *,
    root_value_prefix: torch.Tensor | np.ndarray | None = None,
    rules: str = "xtra",
    num_simulations: int = NUM_SIMULATIONS,
    c1: float = C1,
    c2: float = C2,
    discount: float = DISCOUNT,
    value_delta_max: float = VALUE_DELTA_MAX,
    lstm_horizon: int = LSTM_HORIZON,
    tie_break: str | None = None,
    dirichlet_alpha: float = DIRICHLET_ALPHA,
    exploration_fraction: float = EXPLORATION_FRACTION,
    add_noise: bool = False,
    rng: np.random.Generator | int | None = None,
    faithful_minmax_parent: bool | None = None,
    faithful_parent_q_leak: bool | None = None,
    parallel: bool | None = None,
) -> SearchResult:
    """Run EfficientZero's MCTS from ``B`` roots at once (spec A5).

    Only ``recurrent_fn``, ``root_latent`` and ``root_logits`` are required; every setting
    defaults to EfficientZero's Atari configuration (module constants, with their sources).

    Args:
        recurrent_fn: the dynamics + prediction call (see :data:`RecurrentFn`); called once per
            simulation with all ``B`` leaves, under ``torch.no_grad()``. Declare a ``context``
            parameter to be passed a :class:`SearchContext` (depth, parent, slot, simulation).
            On the CPU its inputs are buffers that later calls overwrite (copy them to keep
            them); its outputs are copied before the next call.
        root_latent: [B, ...] root latent states: a torch tensor on the model's device, or a
            numpy array for a numpy model (``recurrent_fn`` then gets and returns numpy arrays).
        root_lstm_state: the roots' recurrent (value-prefix LSTM) state, a tuple of arrays each
            ``[L, B, ...]`` like ``(h, c)`` ``[1, B, H]``; None for a model without one.
        root_logits: [B, P] root policy logits over the model's policy head (required).
        legal_mask: [B, A] bool, legal action slots of each root (rows may differ; each needs at
            least one legal slot). Illegal slots get no visits. None: all P actions legal.
        action_ids: [B, A] int, the action id passed to the model for each slot (e.g. the ALE
            id); also indexes the policy logits: slot priors are ``logits[b, action_ids[b, a]]``.
            None: slot a is action a.
        root_value_prefix: [B] the roots' value prefixes (the children's rewards are taken
            against them, as EfficientZero's ``Roots.prepare``); None: 0.
        rules: "xtra" (EfficientZero with D-EZ-1/2 fixed, random ties) or "efficientzero"
            (EfficientZero HEAD as it is); see :data:`RULES`. ``tie_break``,
            ``faithful_minmax_parent`` and ``faithful_parent_q_leak`` override single rules.
        num_simulations: S >= 1 (:data:`NUM_SIMULATIONS`).
        c1, c2: pUCT constants (:data:`C1`, :data:`C2`).
        discount: gamma per tree edge (:data:`DISCOUNT`; xtra's runs pass ``env.discount``).
        value_delta_max: floor on the min-max range (:data:`VALUE_DELTA_MAX`).
        lstm_horizon: zeta; the recurrent state is zeroed at depths divisible by it
            (:data:`LSTM_HORIZON`; 1 for a model that predicts rewards, not value prefixes).
        tie_break: "random" (seeded from ``rng``, EZ) or "lowest" slot; None: from ``rules``.
        dirichlet_alpha, exploration_fraction: root noise (0.3, 0.25), used if ``add_noise``.
        add_noise: mix Dirichlet noise into the root priors (self-play, reanalysis).
        rng: a ``np.random.Generator`` (consumed: noise first, then tie-break keys, see
            :func:`draw_randomness`), a seed, or None (fresh entropy; not read when neither
            noise nor random tie-breaks are used).
        faithful_minmax_parent: reproduce D-EZ-1; None: from ``rules``.
        faithful_parent_q_leak: reproduce D-EZ-2 (inert in EZ HEAD); None: from ``rules``.
        parallel: run the tree kernels on numba's threads (prange over roots); None: when
            B >= PARALLEL_MIN_ROOTS and numba has >= PARALLEL_MIN_THREADS threads. The result
            does not depend on it.

    Returns:
        :class:`SearchResult` with host numpy arrays.
    """
    if root_logits is None:
        raise TypeError("search() needs root_logits, the roots' [B, P] policy logits")
    root_latent, root_logits = _as_arrays(root_latent, root_logits)
    chosen = resolve_rules(
        rules,
        tie_break=tie_break,
        faithful_minmax_parent=faithful_minmax_parent,
        faithful_parent_q_leak=faithful_parent_q_leak,
    )
    legal, ids = _slots(legal_mask, action_ids, root_latent, root_logits)
    randomness = draw_randomness(
        rng,
        legal,
        num_simulations=num_simulations,
        add_noise=add_noise,
        dirichlet_alpha=dirichlet_alpha,
        tie_break=chosen["tie_break"],
    )
    return search_with_randomness(
        recurrent_fn,
        root_latent,
        root_lstm_state,
        root_logits,
        legal,
        ids,
        randomness,
        root_value_prefix=root_value_prefix,
        num_simulations=num_simulations,
        c1=c1,
        c2=c2,
        discount=discount,
        value_delta_max=value_delta_max,
        lstm_horizon=lstm_horizon,
        exploration_fraction=exploration_fraction,
        faithful_minmax_parent=chosen["faithful_minmax_parent"],
        faithful_parent_q_leak=chosen["faithful_parent_q_leak"],
        parallel=parallel,
    )


@torch.no_grad()
def search_with_randomness(
    recurrent_fn: RecurrentFn,
    root_latent: torch.Tensor | np.ndarray,
    root_lstm_state: Sequence[torch.Tensor | np.ndarray] | None,
    root_logits: torch.Tensor | np.ndarray,
    legal_mask: np.ndarray,
    action_ids: np.ndarray,
    randomness: SearchRandomness,
    *,
    root_value_prefix: torch.Tensor | np.ndarray | None = None,
    num_simulations: int = NUM_SIMULATIONS,
    c1: float = C1,
    c2: float = C2,
    discount: float = DISCOUNT,
    value_delta_max: float = VALUE_DELTA_MAX,
    lstm_horizon: int = LSTM_HORIZON,
    exploration_fraction: float = EXPLORATION_FRACTION,
    rules: str = "xtra",
    faithful_minmax_parent: bool | None = None,
    faithful_parent_q_leak: bool | None = None,
    parallel: bool | None = None,
) -> SearchResult:
    """:func:`search` with its random numbers given (for replaying a search exactly in tests).

    The tie-break rule is the randomness's (keys: random, None: lowest); ``rules`` sets the
    faithful switches left at None."""
    chosen = resolve_rules(
        rules,
        faithful_minmax_parent=faithful_minmax_parent,
        faithful_parent_q_leak=faithful_parent_q_leak,
    )
    root_latent, root_logits = _as_arrays(root_latent, root_logits)
    legal, ids = _check_inputs(root_latent, root_lstm_state, root_logits, legal_mask, action_ids)
    if legal.shape[0] == 0:  # no roots
        empty = np.zeros(legal.shape)
        return SearchResult(empty.astype(np.int64), np.zeros(0), empty)
    if num_simulations < 1:
        raise ValueError(f"num_simulations={num_simulations} must be >= 1")
    if lstm_horizon < 1:
        raise ValueError(f"lstm_horizon={lstm_horizon} must be >= 1")
    policy_size = root_logits.shape[1]
    state = None
    if root_lstm_state is not None:  # arrays of the roots' kind (torch or numpy)
        convert = torch.as_tensor if isinstance(root_latent, torch.Tensor) else np.asarray
        state = tuple(convert(s) for s in root_lstm_state)
    workspace = _take_workspace(root_latent, state, legal, ids, num_simulations, policy_size)
    try:
        return _run(
            workspace,
            recurrent_fn,
            root_latent,
            root_logits,
            root_value_prefix,
            randomness,
            num_simulations=num_simulations,
            c1=c1,
            c2=c2,
            discount=discount,
            value_delta_max=value_delta_max,
            lstm_horizon=lstm_horizon,
            exploration_fraction=exploration_fraction,
            faithful_minmax_parent=chosen["faithful_minmax_parent"],
            faithful_parent_q_leak=chosen["faithful_parent_q_leak"],
            parallel=parallel,
        )
    finally:
        workspace.in_use = False


def _run(
    workspace,
    recurrent_fn,
    root_latent,
    root_logits,
    root_value_prefix,
    randomness,
    *,
    num_simulations,
    c1,
    c2,
    discount,
    value_delta_max,
    lstm_horizon,
    exploration_fraction,
    faithful_minmax_parent,
    faithful_parent_q_leak,
    parallel,
) -> SearchResult:
    tree, pools = workspace.tree, workspace.pools
    batch = tree.legal_mask.shape[0]
    prepare_roots(
        tree,
        _to_numpy(root_logits),
        randomness.noise,
        exploration_fraction,
        None if root_value_prefix is None else _to_numpy(root_value_prefix),
    )
    tie_random = randomness.tie_keys is not None
    tie_keys = randomness.tie_keys if tie_random else np.zeros((num_simulations, batch), np.uint64)
    tie_keys = np.ascontiguousarray(tie_keys, dtype=np.uint64)
    if parallel is None:
        threads = numba.config.NUMBA_NUM_THREADS  # (get_num_threads() would start the pool)
        parallel = batch >= PARALLEL_MIN_ROOTS and threads >= PARALLEL_MIN_THREADS
    steps = Steps(
        tree,
        c1=c1,
        c2=c2,
        discount=discount,
        value_delta_max=value_delta_max,
        lstm_horizon=lstm_horizon,
        tie_random=tie_random,
        faithful_minmax_parent=faithful_minmax_parent,
        faithful_parent_q_leak=faithful_parent_q_leak,
        parallel=parallel,
        gather=pools.gather,
    )
    with_context = _wants_context(recurrent_fn)
    root_index = np.arange(batch, dtype=np.int64)

    num_reset = steps.simulate(tie_keys[0])
    for sim in range(num_simulations):
        latent, state, ids_in = pools.inputs()
        if with_context:
            context = SearchContext(
                simulation=sim,
                num_simulations=num_simulations,
                root_index=root_index,
                depth=tree.selection[SEL_DEPTH].copy(),
                parent=tree.selection[SEL_PARENT].copy(),
                slot=tree.selection[SEL_SLOT].copy(),
                reset=tree.selection[SEL_RESET] != 0,
            )
            out = recurrent_fn(latent, state, ids_in, context=context)
        else:
            out = recurrent_fn(latent, state, ids_in)
        outputs = pools.store(sim, out, num_reset)
        if sim + 1 < num_simulations:  # this simulation's expansion, the next one's selection
            num_reset = steps.expand_and_simulate(sim, outputs, tie_keys[sim + 1])
        else:
            steps.expand_and_backward(sim, outputs)

    visit_counts = tree.root_visit_counts()
    policy = visit_counts / visit_counts.sum(axis=1, keepdims=True)
    return SearchResult(
        visit_counts=visit_counts,
        root_values=tree.root_values(),
        visit_policy=policy,
        child_q=tree.root_child_q(),
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


# --------------------------------------------------------------------------- workspaces

WORKSPACE_CACHE_BYTES = 16 << 20
"""Host pools up to this size (with their tree) are kept per thread and shape for the next
search: allocating them and their views costs a few hundred microseconds, as much as a
10-simulation search of 8 roots."""


class _Workspace:
    """A tree and the state pools of one search; ``in_use`` while a search runs in it."""

    def __init__(self, tree, pools):
        self.tree, self.pools, self.in_use = tree, pools, True


_workspaces = threading.local()


def _take_workspace(root_latent, root_state, legal, ids, num_simulations, policy_size):
    """A workspace for these roots: a cached one of the same shapes when one is free (host pools
    of at most WORKSPACE_CACHE_BYTES), else a new one. The roots are copied in."""
    if not _HostPools.usable(root_latent, root_state):
        tree = make_tree(legal, ids, num_simulations)
        pools = _DevicePools(root_latent, root_state, tree.selection, num_simulations, policy_size)
        return _Workspace(tree, pools)
    key = (
        isinstance(root_latent, torch.Tensor),
        legal.shape,
        num_simulations,
        policy_size,
        _layout(root_latent),
        None if root_state is None else tuple(_layout(s) for s in root_state),
    )
    cache = getattr(_workspaces, "cache", None)
    if cache is None:
        cache = _workspaces.cache = {}
    workspace = cache.get(key)
    if workspace is not None and not workspace.in_use:
        workspace.in_use = True
        reset_tree(workspace.tree, legal, ids)
        workspace.pools.set_roots(root_latent, root_state)
        return workspace
    tree = make_tree(legal, ids, num_simulations)
    pools = _HostPools(root_latent, root_state, tree.selection, num_simulations, policy_size)
    workspace = _Workspace(tree, pools)
    if pools.nbytes <= WORKSPACE_CACHE_BYTES and (key not in cache or cache[key].in_use):
        if len(cache) >= 4:  # keep a few shapes (self-play, evaluation, tests)
            cache.pop(next(iter(cache)))
        cache[key] = workspace
    return workspace


def _layout(x) -> tuple:
    return tuple(x.shape), str(x.dtype)


# --------------------------------------------------------------------------- state pools


class _HostPools:
    """Node-major pools of latent and recurrent states in host memory (CPU tensors or numpy).

    The step kernel gathers the selected parents' rows into the model's input buffers itself
    (``gather``: byte views of the pools and inputs, zeros for a reset parent's state), and the
    model's scalars are copied straight into the float64 buffer the kernel reads: a simulation
    costs the kernel call, the model call and six small copies. The input buffers are reused
    by every simulation of the search.
    """

    def __init__(self, root_latent, root_state, selection, num_simulations, policy_size):
        self.torch = isinstance(root_latent, torch.Tensor)
        batch = root_latent.shape[0]
        rows = (num_simulations + 1) * batch
        self.batch = batch
        if self.torch:
            empty, split = torch.empty, torch.split
            self.ids = torch.from_numpy(selection[SEL_ACTION_ID])  # a live view
        else:
            root_latent = np.asarray(root_latent)
            root_state = None if root_state is None else [np.asarray(s) for s in root_state]
            empty, split = np.empty, _np_split
            self.ids = selection[SEL_ACTION_ID]
        dtype, shape = root_latent.dtype, tuple(root_latent.shape[1:])
        self.latent_pool = empty((rows, *shape), dtype=dtype)
        self.latent_input = empty((batch, *shape), dtype=dtype)
        self.latent_slices = split(self.latent_pool, batch)
        gather = [_bytes(self.latent_pool, False), _bytes(self.latent_input, False)]
        self.state_slices = self.state_input = None
        if root_state is not None:
            pools = []
            for s in root_state:
                pools.append(empty((s.shape[0], rows, *s.shape[2:]), dtype=s.dtype))
            self.state_input = tuple(
                empty((s.shape[0], batch, *s.shape[2:]), dtype=s.dtype) for s in root_state
            )
            self.state_slices = tuple(split(p, batch, 1) for p in pools)
            for p, i in zip(pools, self.state_input):
                gather += [_bytes(p, True), _bytes(i, True)]
        gather += [_NO_BYTES] * (6 - len(gather))
        self.gather = tuple(gather)
        self.nbytes = sum(a.nbytes for a in gather)
        self.set_roots(root_latent, root_state)
        self.outputs = np.empty((batch, 2 + policy_size), np.float64)
        if self.torch:
            out = torch.from_numpy(self.outputs)
            self.out_columns = (out[:, 0], out[:, 1], out[:, 2:])

    def set_roots(self, root_latent, root_state) -> None:
        """Copy the roots' states into the pools' first rows."""
        if self.torch:
            self.latent_slices[0].copy_(root_latent)
            if root_state is not None:
                for slices, s in zip(self.state_slices, root_state):
                    slices[0].copy_(s)
        else:
            self.latent_slices[0][...] = root_latent
            if root_state is not None:
                for slices, s in zip(self.state_slices, root_state):
                    slices[0][...] = s

    @staticmethod
    def usable(root_latent, root_state) -> bool:
        """Host pools hold host arrays and at most two state arrays."""
        on_host = not isinstance(root_latent, torch.Tensor) or root_latent.device.type == "cpu"
        return on_host and (root_state is None or len(root_state) <= 2)

    def inputs(self):
        return self.latent_input, self.state_input, self.ids

    def store(self, sim, out, num_reset) -> np.ndarray:
        latent, state, value_prefix, value, policy_logits = _unpack(out)
        if self.torch:
            # One multi-tensor copy (a third of the cost of six copy_ calls at small batches).
            dst = [self.latent_slices[sim + 1], *self.out_columns]
            src = [_as_tensor(latent), _column(value_prefix), _column(value)]
            src.append(_as_tensor(policy_logits))
            if self.state_slices is not None:
                _check_state(state, self.state_slices)
                for slices, s in zip(self.state_slices, state):
                    dst.append(slices[sim + 1])
                    src.append(_as_tensor(s))
            _copy_all(dst, src)
        else:
            self.latent_slices[sim + 1][...] = np.asarray(latent)
            if self.state_slices is not None:
                _check_state(state, self.state_slices)
                for slices, s in zip(self.state_slices, state):
                    slices[sim + 1][...] = np.asarray(s)
            self.outputs[:, 0] = np.reshape(np.asarray(value_prefix), -1)
            self.outputs[:, 1] = np.reshape(np.asarray(value), -1)
            self.outputs[:, 2:] = np.asarray(policy_logits)
        return self.outputs


class _DevicePools:
    """Node-major pools of latent and recurrent states on the roots' device (torch, any device).

    Per simulation the selection (parent rows, action ids) goes to the device in one copy, the
    parents' states are read with ``index_select``, the new nodes' LSTM states are zeroed where
    needed, and the model's scalars come back to the host in one copy.
    """

    gather = None

    def __init__(self, root_latent, root_state, selection, num_simulations, policy_size):
        batch = root_latent.shape[0]
        num_nodes = num_simulations + 1
        self.batch = batch
        self.device = root_latent.device
        self.selection = selection
        self.latent_pool = root_latent.new_empty((num_nodes * batch, *root_latent.shape[1:]))
        self.latent_slices = self.latent_pool.split(batch)
        self.latent_slices[0].copy_(root_latent)
        self.state_pools = self.state_slices = None
        if root_state is not None:
            self.state_pools = tuple(
                s.new_empty((s.shape[0], num_nodes * batch, *s.shape[2:])) for s in root_state
            )
            self.state_slices = tuple(p.split(batch, dim=1) for p in self.state_pools)
            for slices, s in zip(self.state_slices, root_state):
                slices[0].copy_(s)
            self.reset_shapes = tuple((1, batch) + (1,) * (s.dim() - 2) for s in root_state)
        assert SEL_ACTION_ID == SEL_POOL_ROW + 1
        self.selection_host = torch.from_numpy(selection[SEL_POOL_ROW : SEL_ACTION_ID + 1])
        shape = (batch, 2 + policy_size)
        self.outputs_dev = torch.empty(shape, dtype=torch.float64, device=self.device)
        pin = self.device.type == "cuda"
        self.outputs_host = torch.empty(shape, dtype=torch.float64, pin_memory=pin)
        self.outputs = self.outputs_host.numpy()

    def inputs(self):
        # A copy: the next kernel call rewrites the selection.
        sel = self.selection_host.to(self.device, copy=True)
        rows, ids = sel[0], sel[1]
        latent = self.latent_pool.index_select(0, rows)
        if self.state_pools is None:
            return latent, None, ids
        return latent, tuple(p.index_select(1, rows) for p in self.state_pools), ids

    def store(self, sim, out, num_reset) -> np.ndarray:
        latent, state, value_prefix, value, policy_logits = _unpack(out)
        self.latent_slices[sim + 1].copy_(_as_tensor(latent))
        if self.state_pools is not None:
            _check_state(state, self.state_slices)
            for slices, s in zip(self.state_slices, state):
                slices[sim + 1].copy_(_as_tensor(s))
            if num_reset:  # spec A5 step 3: zero the LSTM state at depth % lstm_horizon == 0
                mask = torch.from_numpy(self.selection[SEL_RESET] != 0).to(self.device)
                for slices, shape in zip(self.state_slices, self.reset_shapes):
                    slices[sim + 1].masked_fill_(mask.view(shape), 0.0)
        torch.cat(
            (
                _as_tensor(value_prefix).reshape(self.batch, 1),
                _as_tensor(value).reshape(self.batch, 1),
                _as_tensor(policy_logits),
            ),
            dim=1,
            out=self.outputs_dev,
        )
        self.outputs_host.copy_(self.outputs_dev)
        return self.outputs


_NO_BYTES = np.zeros((0, 0, 0), np.uint8)


def _bytes(x, state: bool) -> np.ndarray:
    """Byte view ``[layers, rows, bytes per row]`` uint8 of a C-contiguous tensor or array:
    a state ``[L, rows, ...]`` keeps its layers, a latent ``[rows, ...]`` gets one."""
    shape = (x.shape[0], x.shape[1], -1) if state else (1, x.shape[0], -1)
    if isinstance(x, torch.Tensor):
        return x.reshape(shape).view(torch.uint8).numpy()
    return x.reshape(shape).view(np.uint8)


def _column(x) -> torch.Tensor:
    """A [B] or [B, 1] scalar output as a [B] tensor."""
    x = _as_tensor(x)
    return x if x.dim() == 1 else x.reshape(-1)


def _copy_each(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    for d, s in zip(dst, src):
        d.copy_(s)


_copy_all = getattr(torch, "_foreach_copy_", _copy_each)
"""``dst[i].copy_(src[i])`` for all i, in one call where torch has ``_foreach_copy_``."""


def _np_split(a: np.ndarray, size: int, axis: int = 0) -> list[np.ndarray]:
    return np.split(a, range(size, a.shape[axis], size), axis=axis)


def _check_state(state, slices) -> None:
    if state is None or len(state) != len(slices):
        raise ValueError(
            f"recurrent_fn returned a state of {0 if state is None else len(state)} "
            f"arrays; the roots' state has {len(slices)}"
        )


# --------------------------------------------------------------------------- helpers


def _wants_context(fn: Callable) -> bool:
    """Whether ``fn`` declares a ``context`` parameter that can be passed by keyword."""
    # Fast path for functions, bound methods and callable objects (inspect.signature costs
    # tens of microseconds per search).
    target = getattr(fn, "__func__", fn)
    code = getattr(target, "__code__", None)
    if code is None and not isinstance(fn, functools.partial):
        try:
            code = type(fn).__call__.__code__
        except AttributeError:
            code = None
    if code is not None:
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if "context" not in names:
            return False
    return _signature_has_context(fn)


def _signature_has_context(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return False
    p = params.get("context")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def _unpack(out: Any) -> tuple:
    if isinstance(out, tuple):
        if len(out) != 5:
            raise ValueError(
                "recurrent_fn must return (latent, state, value_prefix, value, policy_logits), "
                f"got a tuple of {len(out)}"
            )
        return out
    return out.latent, out.lstm_state, out.value_prefix, out.value, out.policy_logits


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _as_arrays(root_latent, root_logits):
    """Torch tensors stay as they are; anything else becomes a numpy array."""
    if not isinstance(root_latent, torch.Tensor):
        root_latent = np.asarray(root_latent)
    if not isinstance(root_logits, torch.Tensor):
        root_logits = np.asarray(root_logits)
    return root_latent, root_logits


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _slots(legal_mask, action_ids, root_latent, root_logits) -> tuple[np.ndarray, np.ndarray]:
    """The legal mask and action ids, with their defaults: every action of the policy head
    legal, slot a = action a."""
    batch, policy_size = root_logits.shape[0], root_logits.shape[1]
    if legal_mask is None:
        num_slots = policy_size if action_ids is None else np.shape(action_ids)[1]
        legal_mask = np.ones((batch, num_slots), bool)
    legal = np.asarray(legal_mask, dtype=bool)
    if action_ids is None:
        if legal.ndim != 2:
            raise ValueError(f"legal_mask {legal.shape} must be [B, A]")
        action_ids = np.broadcast_to(np.arange(legal.shape[1]), legal.shape)
    return legal, action_ids


def _check_inputs(root_latent, root_state, root_logits, legal_mask, action_ids):
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
    if root_state is not None:
        if isinstance(root_state, (torch.Tensor, np.ndarray)) or not all(
            len(np.shape(s)) >= 2 and np.shape(s)[1] == batch for s in root_state
        ):
            raise ValueError(
                f"root_lstm_state must be a tuple of arrays [layers, B={batch}, ...] like (h, c)"
            )
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
