"""Batched EfficientZero MCTS (spec A5): compiled tree kernels, a device-side latent pool, a
plain-Python reference for tests.

The front door is :func:`search`; ``docs/search.md`` has a worked example."""

from xtra.search.mcts import (
    RULES,
    RecurrentOutput,
    SearchContext,
    SearchRandomness,
    SearchResult,
    draw_randomness,
    resolve_rules,
    search,
    search_kwargs,
    search_with_randomness,
)
from xtra.search.reference import reference_search
from xtra.search.tree import Tree
from xtra.search.warmup import kernel_cache_path, warm_up

__all__ = [
    "search",
    "search_kwargs",
    "search_with_randomness",
    "draw_randomness",
    "resolve_rules",
    "warm_up",
    "kernel_cache_path",
    "RULES",
    "RecurrentOutput",
    "SearchContext",
    "SearchResult",
    "SearchRandomness",
    "reference_search",
    "Tree",
]
