"""Running a graph of jobs: each job when its dependencies are done, on a local process pool or
on a Ray cluster, with a status file and a progress display.

A job whose output is already finished (:func:`xtra.pipeline.jobs.done`) is not run again; one
that was interrupted runs again and resumes from what it left on disk. So a killed sweep
continues when the same command is run again, and a job that a lost Ray node was running is
retried (Ray's task retries) from its last checkpoint. Outputs must therefore be on storage that
every machine running jobs sees.

The status file (``sweep.json``) is rewritten atomically on every change: each job's state
(``pending``, ``running``, ``done``, ``failed``, ``blocked`` by a failed dependency), whether it
was ``skipped`` as already finished, its result, error and seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from xtra.atomic import atomic_write_text
from xtra.errors import XtraError
from xtra.pipeline import jobs as job_kinds


@dataclass(frozen=True)
class Job:
    """One stage of the pipeline: ``kind`` (:data:`xtra.pipeline.jobs.KINDS`) run with ``args``
    into ``out``, after every job named in ``deps``."""

    name: str
    kind: str
    out: str
    deps: tuple[str, ...]
    args: dict[str, Any] = field(hash=False)
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def execute(job: Job) -> dict[str, Any]:
    """Run one job in this process with ``job.threads`` threads (a pool worker or a Ray task)."""
    job_kinds.set_threads(job.threads)
    return job_kinds.run(job.kind, job.out, job.args)


def check_graph(jobs: list[Job]) -> None:
    """Names unique, dependencies known and listed before their dependents (so no cycle)."""
    seen: set[str] = set()
    for j in jobs:
        if j.name in seen:
            raise XtraError(f"job {j.name!r} appears twice")
        for d in j.deps:
            if d not in seen:
                raise XtraError(f"job {j.name!r} depends on {d!r}, which does not come before it")
        seen.add(j.name)


# --------------------------------------------------------------------------- backends


def exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: a watchdog thread ends the worker once the process that
    started it (pid ``parent``, passed from there: a worker that asked ``os.getppid()`` itself
    would miss a parent killed while the worker was still starting) is gone, so a killed sweep
    leaves no job writing into a run directory that the rerun resumes."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class LocalBackend:
    """``workers`` spawned processes (no forked torch/numba state), or this process when 1."""

    def __init__(self, workers: int):
        self.capacity = workers
        self.pool = (
            None
            if workers == 1
            else ProcessPoolExecutor(
                workers,
                mp_context=get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
        )

    def submit(self, job: Job) -> Future:
        if self.pool is not None:
            return self.pool.submit(execute, job)
        future: Future = Future()
        # In this process: keep the caller's thread count.
        before = job_kinds.set_threads(job.threads)
        try:
            future.set_result(job_kinds.run(job.kind, job.out, job.args))
        except Exception as e:
            future.set_exception(e)
        finally:
            job_kinds.set_threads(before)
        return future

    def wait(self, handles: list[Future], timeout: float) -> list[Future]:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def outcome(self, handle: Future) -> dict[str, Any]:
        return handle.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Ray tasks with the job's ``num_cpus``/``num_gpus``, on the cluster at ``address``
    (``auto``: the one this machine belongs to), on the Ray already initialised in this process,
    or on a local Ray started here when ``address`` is None."""

    def __init__(self, address: str | None, workers: int | None):
        try:
            import ray
        except ImportError:
            raise XtraError(
                "--backend ray needs Ray: pip install 'xtra[distributed]' (or ray>=2.30)"
            ) from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=workers if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                )
            except ConnectionError as e:
                raise XtraError(
                    f"--address {address}: no Ray cluster there ({str(e).splitlines()[0][:120]}): "
                    "start one with `ray start --head` or drop --address for a local Ray"
                ) from None
            self.started = True
        # A task runs the job in a Ray worker; a node lost mid-job makes Ray retry the task
        # elsewhere, and the job resumes from its checkpoints on the shared storage.
        self.remote = ray.remote(max_retries=3)(execute)
        self.capacity = workers or 1_000_000  # Ray queues what does not fit

    def submit(self, job: Job):
        return self.remote.options(num_cpus=job.cpus, num_gpus=job.gpus).remote(job)

    def wait(self, handles: list, timeout: float) -> list:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return ready

    def outcome(self, handle) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            raise cause from None

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_backend(backend: str, workers: int | None, address: str | None):
    if workers is not None and workers < 1:
        raise XtraError(f"--workers must be >= 1, got {workers}")
    if backend == "local":
        if address is not None:
            raise XtraError("--address is for --backend ray: drop it or add --backend ray")
        return LocalBackend(workers or 2)
    if backend == "ray":
        return RayBackend(address, workers)
    raise XtraError(f"--backend {backend!r}: choose local or ray")


# --------------------------------------------------------------------------- the loop


@dataclass
class JobState:
    job: Job
    state: str = "pending"
    skipped: bool = False
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    started: float | None = None

    def record(self) -> dict[str, Any]:
        return {
            "name": self.job.name,
            "kind": self.job.kind,
            "out": self.job.out,
            "deps": list(self.job.deps),
            "cpus": self.job.cpus,
            "gpus": self.job.gpus,
            "state": self.state,
            "skipped": self.skipped,
            "result": self.result,
            "error": self.error,
            "seconds": self.seconds,
        }


def counts(states: dict[str, JobState]) -> dict[str, int]:
    c = {k: 0 for k in ("done", "running", "pending", "failed", "blocked")}
    for s in states.values():
        c[s.state] += 1
    return c


def run_graph(
    jobs: list[Job],
    backend,
    *,
    status: str | Path | None = None,
    header: dict[str, Any] | None = None,
    on_event: Callable[[str, JobState, dict[str, JobState]], None] | None = None,
) -> dict[str, JobState]:
    """Run every unfinished job once its dependencies are done; returns the states by name.

    ``status``: the JSON status file, rewritten atomically after every change (``header``'s
    fields first). ``on_event(event, job_state, states)`` is called with ``skipped``,
    ``started``, ``done`` and ``failed``. A failing job does not stop the others; the jobs that
    depend on it end ``blocked``. Interrupting (Ctrl-C) leaves finished jobs finished."""
    check_graph(jobs)
    states = {j.name: JobState(j) for j in jobs}
    dependents: dict[str, list[str]] = {j.name: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            dependents[d].append(j.name)

    def write() -> None:
        if status is not None:
            body = {**(header or {}), "updated": time.time(), "counts": counts(states),
                    "jobs": [s.record() for s in states.values()]}  # fmt: skip
            atomic_write_text(status, json.dumps(body, indent=1) + "\n")

    def event(name: str, s: JobState) -> None:
        write()
        if on_event is not None:
            on_event(name, s, states)

    for s in states.values():
        if job_kinds.done(s.job.kind, s.job.out):
            s.state, s.skipped = "done", True
            s.result = job_kinds.result(s.job.kind, s.job.out)
            event("skipped", s)
    write()

    running: dict[Any, JobState] = {}
    try:
        while True:
            ready = [
                s for s in states.values()
                if s.state == "pending" and all(states[d].state == "done" for d in s.job.deps)
            ]  # fmt: skip
            for s in ready[: max(backend.capacity - len(running), 0)]:
                s.state, s.started = "running", time.time()
                event("started", s)
                running[backend.submit(s.job)] = s
            if not running:
                break
            for handle in backend.wait(list(running), timeout=1.0):
                s = running.pop(handle)
                s.seconds = time.time() - (s.started or time.time())
                try:
                    s.result = backend.outcome(handle)
                    s.state = "done"
                    event("done", s)
                except Exception as e:  # a job's failure is reported, not raised: others go on
                    s.state = "failed"
                    s.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    block(s.job.name, states, dependents)
                    event("failed", s)
    finally:
        backend.close()
        write()
    return states


def block(name: str, states: dict[str, JobState], dependents: dict[str, list[str]]) -> None:
    for d in dependents[name]:
        if states[d].state == "pending":
            states[d].state = "blocked"
            block(d, states, dependents)
