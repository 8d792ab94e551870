"""The whole XTRA pipeline on one machine: offline data -> teachers -> student -> finetuning.

One function, :func:`run_experiment`, drives the four stages of the paper for a set of source
games and one held-out target game, then compares finetuning conditions (XTRA, EfficientZero from
scratch, the ablations of :data:`CONDITIONS`) over seeds:

1. collect an offline dataset per source game (``data_policy``: uniform random by default);
2. train one offline EfficientZero teacher per source game (``xtra teacher``);
3. distill the teachers into one multi-game student (``xtra distill``); finetuning runs that do
   not use the student (EfficientZero from scratch, "w/o pretraining") run beside it;
4. finetune the student on the target (``xtra finetune``), one run per condition and seed.

The jobs of a stage run in ``workers`` processes with one torch and numba thread each (the
machine's cores, not threads inside one run, are what a CPU run is short of). Every job resumes
from its run directory, so running the same experiment again continues where it stopped and
skips what is finished. `xtra demo` is one seed of this on a ~15-minute budget;
``benchmarks/transfer_minatar.py`` is several seeds, with the improvement ratio and task-weight
curves that :mod:`xtra.report.transfer` makes of the result.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from xtra.config import Config, make_config
from xtra.errors import XtraError
from xtra.pipeline.recipes import game_dir
from xtra.rundir import read_final

CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xtra": ("XTRA", ()),
    "efficientzero": (
        "EfficientZero",
        ("transfer.use_pretraining=false", "transfer.use_offline=false"),
    ),
    "no_pretraining": ("XTRA w/o pretraining", ("transfer.use_pretraining=false",)),
    "no_cross_task": ("XTRA w/o cross-task", ("transfer.use_offline=false",)),
    "no_task_weights": ("XTRA w/o task weights", ("transfer.task_weights=false",)),
    "xtra_accumulated": (
        "XTRA, accumulated task weights",
        ("transfer.task_weight_estimator=accumulated",),
    ),
    "xtra_reanalyze": ("XTRA, offline targets reanalysed", ("transfer.offline_targets=reanalyze",)),
    "xtra_teacher_targets": (
        "XTRA, offline targets from teachers",
        ("transfer.offline_targets=teacher",),
    ),
    "xtra_separate_bn": ("XTRA, separate BatchNorm", ("transfer.separate_batchnorm=true",)),
    "xtra_separate_bn_eq1": (
        "XTRA, separate BatchNorm, Eq. 1 loss",
        ("transfer.separate_batchnorm=true", "transfer.loss_combination=eq1"),
    ),
    "xtra_reanalyze_separate_bn": (
        "XTRA, offline targets reanalysed, separate BatchNorm",
        ("transfer.offline_targets=reanalyze", "transfer.separate_batchnorm=true"),
    ),
}
"""Finetuning conditions: name -> (label, config overrides of the finetuning run). Every
switch is a config field (``transfer.*``), so each run's config.yaml says what it did."""

EXTRA = "+extra"
"""A condition name ending in this (e.g. ``xtra+extra``) also trains on the datasets of
``ExperimentSpec.extra_offline`` -- games collected but never pretrained on -- as offline data."""


def condition_parts(name: str) -> tuple[str, tuple[str, ...], bool]:
    """(label, overrides, with the extra offline games) of a condition name."""
    base, extra = (name[: -len(EXTRA)], True) if name.endswith(EXTRA) else (name, False)
    if base not in CONDITIONS:
        known = ", ".join([*CONDITIONS, *(c + EXTRA for c in CONDITIONS)])
        raise XtraError(f"unknown condition {name!r}: choose from {known}")
    label, overrides = CONDITIONS[base]
    if extra and "transfer.offline_targets=teacher" in overrides:
        raise XtraError(
            f"condition {name!r}: teacher targets need a teacher per offline game and the "
            f"extra_offline games have none: use {base}"
        )
    return (label + (" + extra offline games" if extra else "")), overrides, extra


@dataclass(frozen=True)
class ExperimentSpec:
    """What to run. Budgets are learner steps, optionally capped by minutes of wall clock.

    ``finetune_env_steps`` is the target game's agent-step budget (its Atari100k); finetuning
    runs the learner steps that collect it at ``schedule.env_steps_per_update`` (1:1 pacing by
    default). A ``*_minutes`` cap makes a stage end on time
    instead (`xtra demo`), so its numbers depend on the machine.
    """

    sources: tuple[str, ...]
    target: str
    preset: str = "cpu"
    overrides: tuple[str, ...] = ()
    data_steps: int = 5000
    data_policy: str = "random"
    teacher_steps: int = 2000
    distill_steps: int = 2000
    finetune_env_steps: int = 3000
    teacher_minutes: float | None = None
    distill_minutes: float | None = None
    finetune_minutes: float | None = None
    conditions: tuple[str, ...] = ("xtra", "efficientzero")
    extra_offline: tuple[str, ...] = ()  # collected, used as offline data by "*+extra" only
    student_baselines: tuple[str, ...] = ()  # "self" (App. C offline RL), "bc" (Table 1)
    seeds: tuple[int, ...] = (0,)
    workers: int = 2
    eval_overrides: tuple[str, ...] = field(default=())
    # After ``overrides``, for the finetuning runs only: schedules sized to the finetuning budget
    # (evaluation interval, task-weight cycle) that would mean nothing to a teacher.
    finetune_overrides: tuple[str, ...] = field(default=())

    def validate(self) -> ExperimentSpec:
        if not self.sources:
            raise XtraError("an experiment needs at least one source game")
        if self.target in self.sources:
            raise XtraError(f"{self.target} is both a source and the target: hold it out")
        for c in self.conditions:
            _, _, extra = condition_parts(c)
            if extra and not self.extra_offline:
                raise XtraError(f"condition {c!r} needs extra_offline games")
        for g in self.extra_offline:
            if g in self.sources or g == self.target:
                raise XtraError(f"{g} is a source or the target: extra_offline games are others")
        for b in self.student_baselines:
            if b not in ("self", "bc"):
                raise XtraError(f"unknown student baseline {b!r}: choose self or bc")
        if not self.seeds:
            raise XtraError("give at least one seed")
        if self.workers < 1:
            raise XtraError(f"workers must be >= 1, got {self.workers}")
        for name in ("data_steps", "teacher_steps", "distill_steps", "finetune_env_steps"):
            if getattr(self, name) < 1:
                raise XtraError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self

    def config(self, *extra: str) -> Config:
        return make_config(self.preset, overrides=[*self.overrides, *extra])


# --------------------------------------------------------------------------- jobs
# Top-level functions: they run in worker processes and return only paths and numbers.


def _exit_with_parent(parent: int) -> None:
    """A worker's watchdog: end the worker once the process that started it is gone. A killed
    experiment must not leave jobs running on, writing into run directories that the rerun
    resumes."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _job_collect(game: str, cfg: Config, out: str, steps: int, policy: str) -> dict:
    from xtra.act.collect import collect

    ds = collect(game, cfg, out, steps=steps, policy=policy, chunk_steps=max(steps // 4, 500))
    return {"game": game, "path": str(ds.path), "transitions": ds.num_transitions}


def _job_random(game: str, cfg: Config) -> dict:
    from xtra.act.evaluate import evaluate, evaluation_kwargs

    res = evaluate(
        None,
        game,
        policy="random",
        max_steps=cfg.eval.final_max_steps,
        **evaluation_kwargs(cfg),
    )
    return {"game": game, "mean": res.mean, "scores": res.scores.tolist()}


def _job_teacher(dataset: str, cfg: Config, run_dir: str, seconds: float | None) -> dict:
    from xtra.transfer.teacher import train_teacher

    res = train_teacher(dataset, cfg, run_dir, progress=False, max_seconds=seconds)
    return {"run_dir": str(res.run_dir), "final": _final_mean(res.run_dir)}


def _job_distill(
    data: dict[str, str],
    teachers: dict[str, str] | None,
    cfg: Config,
    run_dir: str,
    seconds: float | None,
    targets: str = "teacher",
) -> dict:
    from xtra.transfer.distill import distill

    res = distill(
        data,
        cfg,
        run_dir,
        teachers=teachers,
        targets=targets,
        progress=False,
        max_seconds=seconds,
    )
    return {"run_dir": str(res.run_dir), "finals": _finals(res.run_dir)}


def _job_finetune(
    target: str,
    cfg: Config,
    run_dir: str,
    pretrained: str | None,
    offline: dict[str, str],
    teachers: dict[str, str],
    label: str,
    seconds: float | None,
) -> dict:
    from xtra.transfer.finetune import finetune

    res = finetune(
        target,
        cfg,
        run_dir,
        pretrained=pretrained if cfg.transfer.use_pretraining else None,
        offline=offline,
        teachers=teachers,
        method=label,
        progress=False,
        max_seconds=seconds,
    )
    return {"run_dir": str(res.run_dir), "final": _final_mean(res.run_dir)}


def _job_zero_shot(model: str, game: str, cfg: Config) -> dict:
    """The student on the target game before finetuning, under the experiment's protocol."""
    from xtra.act.evaluate import evaluate, evaluation_kwargs
    from xtra.device import resolve_device
    from xtra.rundir import load_model

    device = resolve_device(cfg.device)
    net, _, _ = load_model(model, device)
    res = evaluate(
        net, game, max_steps=cfg.eval.final_max_steps, device=device, **evaluation_kwargs(cfg)
    )
    return {"game": game, "mean": res.mean}


def _finals(run_dir: str | Path) -> dict[str, float]:
    return {g: float(r["mean"]) for g, r in read_final(run_dir)["finals"].items()}


def _final_mean(run_dir: str | Path) -> float:
    return float(read_final(run_dir)["final"]["mean"])


Job = tuple[Callable[..., dict], tuple]


class _Inline(Executor):
    """An executor that runs each job at submission, in this process (``workers == 1``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def executor(workers: int) -> Executor:
    """``workers`` fresh processes with one thread each, or this process when ``workers == 1``."""
    if workers == 1:
        return _Inline()
    # spawn: no forked torch/numba state in the workers
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread)


def run_jobs(jobs: Sequence[Job], workers: int) -> list[dict]:
    """Run ``(function, args)`` jobs, ``workers`` at a time; results in job order. A failing job
    raises here, after the others end."""
    with executor(min(workers, max(len(jobs), 1))) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- the pipeline


def _flat(job: Job) -> tuple:
    return (job[0], *job[1])


def run_experiment(
    spec: ExperimentSpec, work: str | Path, log: Callable[[str], None] | None = None
) -> dict:
    """Run (or resume) every stage of ``spec`` under ``work``; returns the summary that
    :mod:`xtra.report.transfer` reads, also written to ``work/experiment.json``."""
    spec.validate()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
            f"[{(time.perf_counter() - t0) / 60:5.1f} min] {msg}"
        )

    def minutes(m: float | None) -> float | None:
        return None if m is None else 60.0 * m

    base = spec.config()
    games = [*spec.sources, spec.target]
    eval_cfg = spec.config(*spec.eval_overrides)

    say(
        f"collecting {spec.data_steps} steps of {spec.data_policy} data for {', '.join(spec.sources)}"
    )
    collected = [*spec.sources, *spec.extra_offline]
    jobs: list[Job] = [
        (
            _job_collect,
            (g, base, str(work / "data" / game_dir(g)), spec.data_steps, spec.data_policy),
        )
        for g in collected
    ]
    jobs += [(_job_random, (g, eval_cfg)) for g in games]
    out = run_jobs(jobs, spec.workers)
    all_data = {r["game"]: r["path"] for r in out[: len(collected)]}
    data = {g: all_data[g] for g in spec.sources}
    random = {r["game"]: r["mean"] for r in out[len(collected) :]}

    say(f"training {len(spec.sources)} offline teachers ({spec.teacher_steps} steps each)")
    tcfg = spec.config(f"schedule.training_steps={spec.teacher_steps}", *spec.eval_overrides)
    out = run_jobs(
        [
            (
                _job_teacher,
                (
                    data[g],
                    tcfg,
                    str(work / "teachers" / game_dir(g)),
                    minutes(spec.teacher_minutes),
                ),
            )
            for g in spec.sources
        ],
        spec.workers,
    )
    teachers = {g: r["run_dir"] for g, r in zip(spec.sources, out)}
    teacher_scores = {g: r["final"] for g, r in zip(spec.sources, out)}
    for g in spec.sources:
        say(f"teacher {g}: {teacher_scores[g]:.2f} (random {random[g]:.2f})")

    # The learner steps that collect the budget at the run's replay ratio: 1:1 by default, a
    # quarter of them at 4 env steps per update (training on past the budget would give the
    # runs updates their env-step budget does not pay for).
    updates = math.ceil(spec.finetune_env_steps / base.schedule.env_steps_per_update)
    fcfg_steps = [
        f"schedule.env_steps={spec.finetune_env_steps}",
        f"schedule.training_steps={updates}",
        *spec.eval_overrides,
        *spec.finetune_overrides,
    ]
    runs = [(c, s) for c in spec.conditions for s in spec.seeds]
    student_dir = str(work / "student")

    def finetune_job(condition: str, seed: int) -> Job:
        label, overrides, extra = condition_parts(condition)
        cfg = spec.config(*fcfg_steps, f"seed={seed}", *overrides)
        run_dir = str(work / "finetune" / f"{condition}-s{seed}")
        offline = all_data if extra else data
        return (
            _job_finetune,
            (
                spec.target,
                cfg,
                run_dir,
                student_dir,
                offline,
                teachers,
                label,
                minutes(spec.finetune_minutes),
            ),
        )

    def pretrained(condition: str) -> bool:
        return spec.config(*condition_parts(condition)[1]).transfer.use_pretraining

    # One pool for the student and every finetuning run: the runs without pretraining start
    # beside the distillation, the others queue up as soon as the student exists.
    independent = [r for r in runs if not pretrained(r[0])]
    dependent = [r for r in runs if pretrained(r[0])]
    dcfg = spec.config(f"schedule.training_steps={spec.distill_steps}", *spec.eval_overrides)
    say(
        f"distilling the student ({spec.distill_steps} steps)"
        + "".join(f", a {b} student" for b in spec.student_baselines)
        + (f"; beside it {len(independent)} finetuning run(s)" if independent else "")
    )
    with executor(spec.workers) as pool:
        distilled = pool.submit(
            _job_distill, data, teachers, dcfg, student_dir, minutes(spec.distill_minutes)
        )
        baselines = {
            b: pool.submit(
                _job_distill,
                data,
                None,
                dcfg,
                str(work / f"student-{b}"),
                minutes(spec.distill_minutes),
                b,
            )
            for b in spec.student_baselines
        }
        futures = {r: pool.submit(*_flat(finetune_job(*r))) for r in independent}
        student = distilled.result()["finals"]
        for g in spec.sources:
            say(f"student on {g}: {student[g]:.2f} (teacher {teacher_scores[g]:.2f})")
        zero_shot = pool.submit(_job_zero_shot, student_dir, spec.target, eval_cfg)
        if dependent:
            say(f"finetuning the student on {spec.target}: {len(dependent)} run(s)")
        futures.update({r: pool.submit(*_flat(finetune_job(*r))) for r in dependent})
        results = {r: f.result() for r, f in futures.items()}
        zero_shot_score = zero_shot.result()["mean"]
        baseline_finals = {b: {"run_dir": str(work / f"student-{b}"), "finals": f.result()["finals"]}
                           for b, f in baselines.items()}  # fmt: skip

    summary = {
        "spec": asdict(spec),
        "random": random,
        "teachers": {g: {"run_dir": teachers[g], "final": teacher_scores[g]} for g in spec.sources},
        "data": all_data,
        "student": {"run_dir": student_dir, "finals": student, "zero_shot": zero_shot_score},
        "student_baselines": baseline_finals,
        "finetune": [
            {
                "condition": c,
                "label": condition_parts(c)[0],
                "seed": s,
                "run_dir": results[(c, s)]["run_dir"],
                "final": results[(c, s)]["final"],
            }
            for c, s in runs
        ],
        "wall_s": time.perf_counter() - t0,
    }
    (work / "experiment.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"done: {work / 'experiment.json'}")
    return summary


def load_summary(work: str | Path) -> dict[str, Any]:
    path = Path(work) / "experiment.json"
    if not path.exists():
        raise XtraError(f"no {path}: run the experiment first")
    return json.loads(path.read_text())
