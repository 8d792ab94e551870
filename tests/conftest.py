"""Test-session settings: one thread per pytest worker (CI runs `pytest -n 2` on 2 cores; more
threads than cores makes small CPU kernels several times slower)."""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
