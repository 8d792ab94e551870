"""Test-session settings: one thread per pytest worker (CI runs `pytest -n 2` on 2 cores; more
threads than cores makes small CPU kernels several times slower)."""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Minutes-long tests first: `pytest -n 2` hands out tests in collection order, so the
    learning check then runs on one worker beside all the others instead of after most of them."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)
