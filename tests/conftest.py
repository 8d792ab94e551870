"""Test-session settings: one thread per pytest worker (CI runs `pytest -n 2` on 2 cores; more
threads than cores makes small CPU kernels several times slower)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("learn_minatar")``: a script of benchmarks/ as a module, for its functions
    (benchmarks/ is not a package)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def run_benchmark():
    """``run_benchmark("learner_catch", "--updates", "6", ...)``: a script of benchmarks/ as its
    user runs it (a subprocess from the repository root); returns the finished process."""

    def run(name: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(BENCHMARKS / f"{name}.py"), *map(str, args)]
        return subprocess.run(
            cmd, capture_output=True, text=True, cwd=BENCHMARKS.parent, timeout=300
        )

    return run


def pytest_collection_modifyitems(items):
    """Minutes-long tests first: `pytest -n 2` hands out tests in collection order, so the
    learning check then runs on one worker beside all the others instead of after most of them."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)
