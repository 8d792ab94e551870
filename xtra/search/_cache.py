"""Where numba keeps the compiled search kernels between processes.

numba's ``cache=True`` writes next to the source file (``xtra/search/__pycache__``), which an
installed package may not be allowed to write; numba then falls back to its own user-wide
directory, and raises at import when it finds no writable place at all. The search kernels are
instead cached in a directory of their own, chosen in this order:

1. ``$XTRA_CACHE_DIR/numba`` when ``XTRA_CACHE_DIR`` is set;
2. ``$NUMBA_CACHE_DIR`` when that is set (numba's own setting, as for every other numba user);
3. the user cache directory: ``$XDG_CACHE_HOME/xtra/numba`` (default ``~/.cache/xtra/numba``)
   on Linux, ``~/Library/Caches/xtra/numba`` on macOS, ``%LOCALAPPDATA%\\xtra\\Cache\\numba`` on
   Windows.

When that directory cannot be created or written, numba's own fallbacks apply (the package's
``__pycache__``, then numba's user-wide directory); when none is writable the kernels are
compiled in every process (a ``RuntimeWarning`` says so) instead of failing the import.
Entries are keyed by the source file's path and modification time, so checkouts and versions
do not collide, and an edited kernel is recompiled.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numba
from numba.core import config as numba_config

ENV_VAR = "XTRA_CACHE_DIR"


def user_cache_dir() -> Path:
    """The platform's per-user cache directory for xtra (not created)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "xtra" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "xtra"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xtra"


def kernel_cache_dir() -> Path:
    """The directory asked for the compiled kernels (see the module docstring for the order)."""
    xtra_dir = os.environ.get(ENV_VAR)
    if xtra_dir:
        return Path(xtra_dir).expanduser() / "numba"
    if numba_config.CACHE_DIR:
        return Path(numba_config.CACHE_DIR).expanduser()
    return user_cache_dir() / "numba"


@contextlib.contextmanager
def _numba_cache_dir(path: Path) -> Iterator[None]:
    """numba reads ``config.CACHE_DIR`` when a function's cache is set up: point it at ``path``
    for that moment only, leaving numba's setting for everyone else untouched."""
    saved = numba_config.CACHE_DIR
    numba_config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        numba_config.CACHE_DIR = saved


_warned = False


def cached_njit(fn: Callable | None = None, **options) -> Callable:
    """``numba.njit(**options)`` with its on-disk cache in :func:`kernel_cache_dir`."""
    if fn is None:
        return lambda f: cached_njit(f, **options)
    dispatcher = numba.njit(cache=False, **options)(fn)
    with _numba_cache_dir(kernel_cache_dir()):
        try:
            dispatcher.enable_caching()
        except RuntimeError as e:  # numba found no writable cache location at all
            global _warned
            if not _warned:
                _warned = True
                warnings.warn(
                    f"xtra.search: compiled kernels will not be cached ({e}); set {ENV_VAR} to "
                    "a writable directory to keep them between runs",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return dispatcher


def cache_path(dispatcher) -> str | None:
    """Where ``dispatcher`` (a :func:`cached_njit` function) reads and writes its cache, or None
    when it is not cached."""
    return getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
