"""Compile the search kernels ahead of the first search (or load them from the cache)."""

from __future__ import annotations

import time

import numba
import numpy as np

from xtra.search import tree
from xtra.search._cache import cache_path
from xtra.search.mcts import PARALLEL_MIN_THREADS, RecurrentOutput, search


def _tiny_model(latent, state, action_ids):
    batch = latent.shape[0]
    value = np.linspace(-1.0, 1.0, batch)
    logits = np.zeros((batch, 3))
    return RecurrentOutput(latent, state, value * 0.1, value, logits)


def warm_up(parallel: bool | None = None) -> dict[str, float]:
    """Compile the search's numba kernels now, or load them from the on-disk cache.

    The first :func:`~xtra.search.search` of a process otherwise pays for it: about 9 s for the
    one-thread kernel and 15 s for the multi-threaded one on a 2-core machine when nothing is
    cached, about a second when the cache (see :mod:`xtra.search._cache`; ``XTRA_CACHE_DIR``
    overrides where) already holds them. Run it once after installing, e.g. from a CLI command.

    Args:
        parallel: also compile the multi-threaded kernel (prange over roots). None: only when a
            default search would use it (numba has >= PARALLEL_MIN_THREADS threads).

    Returns:
        Seconds taken per kernel variant, ``{"serial": s}`` or ``{"serial": s, "parallel": s}``
        (where they are cached: :func:`kernel_cache_path`).
    """
    if parallel is None:
        parallel = numba.config.NUMBA_NUM_THREADS >= PARALLEL_MIN_THREADS
    legal = np.array([[True, True, False], [True, True, True]])
    times = {}
    for name, use_threads in (("serial", False), ("parallel", True)):
        if use_threads and not parallel:
            continue
        start = time.perf_counter()
        search(
            _tiny_model,
            np.zeros((2, 1)),
            root_logits=np.zeros((2, 3)),
            legal_mask=legal,
            num_simulations=4,
            add_noise=True,
            rng=0,
            parallel=use_threads,
        )
        times[name] = time.perf_counter() - start
    return times


def kernel_cache_path() -> str | None:
    """The directory holding the compiled search kernels (None: they are not cached)."""
    return cache_path(tree._step_serial)
