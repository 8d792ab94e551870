"""Batched EfficientZero MCTS (spec A5): compiled tree kernels, a device-side latent pool, a
plain-Python reference for tests."""

from xtra.search.mcts import (
    SearchRandomness,
    SearchResult,
    draw_randomness,
    search,
    search_kwargs,
    search_with_randomness,
)
from xtra.search.reference import reference_search
from xtra.search.tree import Tree

__all__ = [
    "search",
    "search_kwargs",
    "search_with_randomness",
    "draw_randomness",
    "SearchResult",
    "SearchRandomness",
    "reference_search",
    "Tree",
]
