"""A sweep: the whole XTRA pipeline over source games, target games, conditions and seeds, as a
graph of jobs (`xtra sweep`, docs/sweeps.md).

A sweep file (YAML; shipped ones in ``xtra/resources/sweeps/``, e.g. ``transfer-family``)::

    name: transfer-family
    sources: [family/catch-colors, family/catch-wide]   # pretrained on: datasets, teachers
    targets: [family/catch]                             # held out: finetuned on
    extra_offline: [family/courier]                     # collected, offline data of "+extra"
    conditions: [xtra, efficientzero, xtra+extra]       # xtra.pipeline.experiment.CONDITIONS
    seeds: [0, 1, 2]
    preset: cpu
    set: [schedule.env_steps_per_update=4]              # every job
    finetune_set: [eval.interval=300]                   # finetuning runs only
    eval_set: []                                        # evaluations only
    budgets: {data_steps: 5000, teacher_steps: 1500, distill_steps: 1500,
              finetune_env_steps: 3000, finetune_minutes: null}
    resources: {cpus: 1, gpus: 0, distill: {gpus: 1}}  # per job; a stage may differ

A pretraining recipe (``configs/*.yaml``: ``target``, ``pretrain``) is a sweep too, with seed 0,
conditions ``xtra`` and ``efficientzero`` and the default budgets.

:func:`expand` turns a spec into jobs (:class:`xtra.pipeline.scheduler.Job`), each with its own
output under the sweep directory and its dependencies named::

    data/<game>/                          collect:<game>        (sources and extra_offline)
    evals/random-<game>.json              random:<game>         (sources and targets)
    teachers/<game>/                      teacher:<game>        <- collect:<game>
    student/                              student               <- collect and teacher of every source
    student-<self|bc>/                    student-<b>           <- collect of every source
    evals/zero_shot-<target>.json         zero_shot:<target>    <- student
    finetune/<target>/<condition>-s<seed>/ finetune:<target>:<condition>:s<seed>
                                          <- student (if pretrained), collect of its offline games

Runs without pretraining (EfficientZero from scratch, "w/o pretraining") therefore start beside
the teachers; those from the student wait for it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from xtra.atomic import atomic_write_text
from xtra.config import Config, make_config
from xtra.errors import XtraError
from xtra.games import get_game
from xtra.pipeline import jobs as job_kinds
from xtra.pipeline.experiment import condition_parts
from xtra.pipeline.recipes import CONFIG_DIR, game_dir
from xtra.pipeline.scheduler import Job, counts, make_backend, run_graph

SWEEP_DIR = Path(__file__).resolve().parents[1] / "resources" / "sweeps"
"""The sweeps shipped with the package (``xtra sweep NAME``)."""

STAGES = ("collect", "random", "teacher", "distill", "zero_shot", "finetune")


@dataclass(frozen=True)
class Resources:
    """What one job asks of a Ray node (the local pool runs ``cpus`` threads per job)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Budgets:
    """Stage budgets: agent steps of data, learner steps of teachers and student, target env
    steps of finetuning; a ``*_minutes`` cap ends a stage on time (numbers then depend on the
    machine)."""

    data_steps: int = 5000
    data_policy: str = "random"
    teacher_steps: int = 2000
    distill_steps: int = 2000
    finetune_env_steps: int = 3000
    teacher_minutes: float | None = None
    distill_minutes: float | None = None
    finetune_minutes: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    about: str = ""
    extra_offline: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ("xtra", "efficientzero")
    seeds: tuple[int, ...] = (0,)
    preset: str = "cpu"
    overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    eval_overrides: tuple[str, ...] = ()
    student_baselines: tuple[str, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    resources: Resources = field(default_factory=Resources)
    stage_resources: dict[str, Resources] = field(default_factory=dict)

    def validate(self) -> SweepSpec:
        where = f"sweep {self.name!r}"
        if not self.sources:
            raise XtraError(f"{where}: give at least one source game under 'sources'")
        if not self.targets:
            raise XtraError(f"{where}: give at least one target game under 'targets'")
        for t in self.targets:
            if t in self.sources:
                raise XtraError(f"{where}: {t} is both a source and a target: hold it out")
        for g in self.extra_offline:
            if g in self.sources or g in self.targets:
                raise XtraError(
                    f"{where}: extra_offline game {g} is a source or a target: list others"
                )
        if not self.conditions:
            raise XtraError(f"{where}: give at least one condition under 'conditions'")
        for c in self.conditions:
            _, _, extra = condition_parts(c)
            if extra and not self.extra_offline:
                raise XtraError(f"{where}: condition {c!r} needs extra_offline games")
        if not self.seeds:
            raise XtraError(f"{where}: give at least one seed under 'seeds'")
        if len(set(self.seeds)) != len(self.seeds):
            raise XtraError(f"{where}: seeds {list(self.seeds)} repeat one: list each once")
        for b in self.student_baselines:
            if b not in ("self", "bc"):
                raise XtraError(f"{where}: unknown student baseline {b!r}: choose self or bc")
        b = self.budgets
        for name in ("data_steps", "teacher_steps", "distill_steps", "finetune_env_steps"):
            if getattr(b, name) < 1:
                raise XtraError(f"{where}: budgets.{name} must be >= 1, got {getattr(b, name)}")
        for name in ("teacher_minutes", "distill_minutes", "finetune_minutes"):
            m = getattr(b, name)
            if m is not None and not m > 0:
                raise XtraError(f"{where}: budgets.{name} must be > 0 or null, got {m}")
        for stage, r in [("", self.resources), *self.stage_resources.items()]:
            key = f"resources.{stage}." if stage else "resources."
            if not r.cpus > 0 or not r.gpus >= 0:
                raise XtraError(f"{where}: {key}cpus must be > 0 and {key}gpus >= 0")
        return self

    def config(self, *extra: str) -> Config:
        return make_config(self.preset, overrides=[*self.overrides, *extra])

    def resources_of(self, stage: str) -> Resources:
        return self.stage_resources.get(stage, self.resources)


# --------------------------------------------------------------------------- loading


def available() -> dict[str, Path]:
    """Shipped sweeps, then pretraining recipes, by name."""
    recipes = {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}
    return {**recipes, **{p.stem: p for p in sorted(SWEEP_DIR.glob("*.yaml"))}}


_TOP = {"name", "about", "sources", "targets", "extra_offline", "conditions", "seeds", "preset",
        "set", "finetune_set", "eval_set", "student_baselines", "budgets", "resources"}  # fmt: skip
_RECIPE = {"name", "about", "target", "pretrain", "preset", "set"}


def load_sweep(name_or_path: str | Path) -> SweepSpec:
    """A sweep by name (shipped sweep or pretraining recipe) or YAML path; XtraError naming the
    field for a malformed one."""
    path = Path(name_or_path)
    if not path.is_file():
        path = available().get(str(name_or_path), Path("/nonexistent"))
    if not path.is_file():
        raise XtraError(
            f"unknown sweep {str(name_or_path)!r}: give a YAML file or one of "
            f"{', '.join(available())}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise XtraError(f"{path} is not valid YAML{at}: fix the file") from None
    if not isinstance(data, dict):
        raise XtraError(f"{path} is not a mapping of sweep fields: see docs/sweeps.md")
    return spec_from_dict(data, source=str(path), default_name=path.stem).validate()


def spec_from_dict(data: dict[str, Any], source: str, default_name: str = "sweep") -> SweepSpec:
    if "pretrain" in data:  # a pretraining recipe: one target, the default seeds and conditions
        unknown = set(data) - _RECIPE
        if unknown:
            raise XtraError(f"{source}: unknown recipe field {sorted(unknown)[0]!r}")
        data = {
            "name": data.get("name", default_name),
            "about": data.get("about", ""),
            "sources": data["pretrain"],
            "targets": [data.get("target")] if data.get("target") else [],
            "preset": data.get("preset", "paper"),
            "set": data.get("set") or [],
        }
    unknown = set(data) - _TOP
    if unknown:
        raise XtraError(
            f"{source}: unknown field {sorted(unknown)[0]!r}: choose from {', '.join(sorted(_TOP))}"
        )

    def strings(key: str, games: bool = False) -> tuple[str, ...]:
        value = data.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise XtraError(f"{source}: {key} must be a list of strings")
        return tuple(get_game(v).name for v in value) if games else tuple(value)

    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise XtraError(f"{source}: seeds must be a list of integers >= 0, e.g. [0, 1, 2]")
    spec = SweepSpec(
        name=str(data.get("name", default_name)),
        about=str(data.get("about", "")),
        sources=strings("sources", games=True),
        targets=strings("targets", games=True),
        extra_offline=strings("extra_offline", games=True),
        conditions=strings("conditions") if "conditions" in data else SweepSpec.conditions,
        seeds=tuple(seeds),
        preset=str(data.get("preset", "cpu")),
        overrides=strings("set"),
        finetune_overrides=strings("finetune_set"),
        eval_overrides=strings("eval_set"),
        student_baselines=strings("student_baselines"),
        budgets=_record(Budgets, data.get("budgets") or {}, f"{source}: budgets"),
        resources=_record(Resources, _plain(data.get("resources") or {}), f"{source}: resources"),
        stage_resources={
            stage: _record(Resources, value, f"{source}: resources.{stage}")
            for stage, value in _stages(data.get("resources") or {}, source).items()
        },
    )
    return spec


def _plain(resources: Any) -> dict:
    return (
        {k: v for k, v in resources.items() if k not in STAGES}
        if isinstance(resources, dict)
        else resources
    )


def _stages(resources: Any, source: str) -> dict:
    if not isinstance(resources, dict):
        raise XtraError(f"{source}: resources must be a mapping, e.g. {{cpus: 1, gpus: 0}}")
    base = {k: v for k, v in resources.items() if k not in STAGES}
    return {k: {**base, **(v or {})} for k, v in resources.items() if k in STAGES}


def _record(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with each field's type checked; one-line error naming the field."""
    if not isinstance(data, dict):
        raise XtraError(f"{where} must be a mapping of {', '.join(f.name for f in fields(cls))}")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise XtraError(f"{where}: unknown field {key!r}: choose from {', '.join(known)}")
        default = getattr(cls(), key)
        if isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(value, bool):
            ok = False
        elif isinstance(default, int):
            ok = isinstance(value, int)
        else:  # a float, or None for an optional float
            ok = isinstance(value, (int, float)) or (default is None and value is None)
        if not ok:
            raise XtraError(f"{where}.{key} = {value!r} has the wrong type (like {default!r})")
        values[key] = value
    return cls(**values)


# --------------------------------------------------------------------------- expansion


def expand(spec: SweepSpec, out: str | Path) -> list[Job]:
    """The sweep's jobs in an order where every job follows its dependencies."""
    spec.validate()
    out = Path(out)
    b = spec.budgets
    base = spec.config()
    eval_cfg = spec.config(*spec.eval_overrides)

    def minutes(m: float | None) -> float | None:
        return None if m is None else 60.0 * m

    def job(name: str, kind: str, path: Path, deps=(), **args) -> Job:
        r = spec.resources_of(kind)
        return Job(name, kind, str(path), tuple(deps), args, cpus=r.cpus, gpus=r.gpus)

    data = {g: out / "data" / game_dir(g) for g in [*spec.sources, *spec.extra_offline]}
    jobs = [
        job(f"collect:{g}", "collect", p, game=g, cfg=base, steps=b.data_steps,
            policy=b.data_policy)
        for g, p in data.items()
    ]  # fmt: skip
    jobs += [
        job(f"random:{g}", "random", out / "evals" / f"random-{game_dir(g)}.json",
            game=g, cfg=eval_cfg)
        for g in [*spec.sources, *spec.targets]
    ]  # fmt: skip
    tcfg = spec.config(f"schedule.training_steps={b.teacher_steps}", *spec.eval_overrides)
    teachers = {g: out / "teachers" / game_dir(g) for g in spec.sources}
    jobs += [
        job(f"teacher:{g}", "teacher", teachers[g], [f"collect:{g}"], dataset=str(data[g]),
            cfg=tcfg, seconds=minutes(b.teacher_minutes))
        for g in spec.sources
    ]  # fmt: skip
    source_data = {g: str(data[g]) for g in spec.sources}
    collects = [f"collect:{g}" for g in spec.sources]
    dcfg = spec.config(f"schedule.training_steps={b.distill_steps}", *spec.eval_overrides)
    student = out / "student"
    jobs.append(
        job("student", "distill", student, [*collects, *(f"teacher:{g}" for g in spec.sources)],
            data=source_data, teachers={g: str(p) for g, p in teachers.items()}, cfg=dcfg,
            seconds=minutes(b.distill_minutes), targets="teacher")
    )  # fmt: skip
    jobs += [
        job(f"student-{s}", "distill", out / f"student-{s}", collects, data=source_data,
            teachers=None, cfg=dcfg, seconds=minutes(b.distill_minutes), targets=s)
        for s in spec.student_baselines
    ]  # fmt: skip
    jobs += [
        job(f"zero_shot:{t}", "zero_shot", out / "evals" / f"zero_shot-{game_dir(t)}.json",
            ["student"], model=str(student), game=t, cfg=eval_cfg)
        for t in spec.targets
    ]  # fmt: skip
    # The learner steps that collect the target budget at the run's replay ratio (1:1 unless
    # schedule.env_steps_per_update says otherwise).
    steps_cfg = spec.config(*spec.finetune_overrides)
    updates = math.ceil(b.finetune_env_steps / steps_cfg.schedule.env_steps_per_update)
    for t in spec.targets:
        for c in spec.conditions:
            label, overrides, extra = condition_parts(c)
            for s in spec.seeds:
                cfg = spec.config(
                    f"schedule.env_steps={b.finetune_env_steps}",
                    f"schedule.training_steps={updates}",
                    *spec.eval_overrides,
                    *spec.finetune_overrides,
                    f"seed={s}",
                    *overrides,
                )
                offline_games = [*spec.sources, *(spec.extra_offline if extra else ())]
                use_offline = cfg.transfer.use_offline
                offline = {g: str(data[g]) for g in offline_games} if use_offline else {}
                pretrained = str(student) if cfg.transfer.use_pretraining else None
                deps = [f"collect:{g}" for g in offline] + (["student"] if pretrained else [])
                targets_from = {}
                if offline and cfg.transfer.offline_targets == "teacher":
                    targets_from = {g: str(teachers[g]) for g in offline}
                    deps += [f"teacher:{g}" for g in offline]
                jobs.append(
                    job(f"finetune:{t}:{c}:s{s}", "finetune",
                        out / "finetune" / game_dir(t) / f"{c}-s{s}", deps, game=t, cfg=cfg,
                        pretrained=pretrained, offline=offline, label=label,
                        seconds=minutes(b.finetune_minutes), teachers=targets_from)
                )  # fmt: skip
    return jobs


def summaries(spec: SweepSpec, results: dict[str, dict]) -> dict[str, dict]:
    """Per target, the experiment summary (``experiment.json``'s layout, which
    :mod:`xtra.report.transfer` reads) of the jobs finished so far."""

    def get(name: str) -> dict | None:
        return results.get(name)

    out = {}
    for t in spec.targets:
        runs = []
        for c in spec.conditions:
            for s in spec.seeds:
                r = get(f"finetune:{t}:{c}:s{s}")
                if r is not None:
                    runs.append({"condition": c, "label": condition_parts(c)[0], "seed": s,
                                 "run_dir": r["run_dir"], "final": r["final"]})  # fmt: skip
        student = get("student")
        zero_shot = get(f"zero_shot:{t}")
        out[t] = {
            "spec": {**asdict(spec), "target": t},
            "random": {g: r["mean"] for g in [*spec.sources, t] if (r := get(f"random:{g}"))},
            "teachers": {
                g: {"run_dir": r["run_dir"], "final": r["final"]}
                for g in spec.sources
                if (r := get(f"teacher:{g}"))
            },  # fmt: skip
            "data": {
                g: r["path"]
                for g in [*spec.sources, *spec.extra_offline]
                if (r := get(f"collect:{g}"))
            },  # fmt: skip
            "student": None
            if student is None
            else {
                "run_dir": student["run_dir"],
                "finals": student["finals"],
                "zero_shot": None if zero_shot is None else zero_shot["mean"],
            },  # fmt: skip
            "student_baselines": {
                b: {"run_dir": r["run_dir"], "finals": r["finals"]}
                for b in spec.student_baselines
                if (r := get(f"student-{b}"))
            },  # fmt: skip
            "finetune": runs,
        }
    return out


# --------------------------------------------------------------------------- running


STATUS = "sweep.json"


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    on_event=None,
) -> dict[str, Any]:
    """Run (or resume) every job of ``spec`` under ``out``; returns the status written to
    ``out/sweep.json`` (jobs, their states and results, and per target the experiment summary)."""
    out = Path(out)
    jobs = expand(spec, out)
    runner = make_backend(backend, workers, address)
    out.mkdir(parents=True, exist_ok=True)
    header = {"name": spec.name, "spec": asdict(spec), "backend": backend}
    display = Display(len(jobs)) if progress else None
    events = [f for f in (display, on_event) if f is not None]

    def event(name, state, states) -> None:
        for f in events:
            f(name, state, states)

    try:
        states = run_graph(jobs, runner, status=out / STATUS, header=header, on_event=event)
    finally:
        if display is not None:
            display.close()
    results = {n: s.result for n, s in states.items() if s.state == "done"}
    body = json.loads((out / STATUS).read_text())
    body["experiments"] = summaries(spec, results)
    atomic_write_text(out / STATUS, json.dumps(body, indent=1) + "\n")
    return body


class Display:
    """Jobs done / running / left on a rich progress bar (a terminal), and one line per started,
    finished or failed job on stderr."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.t0 = time.perf_counter()
        self.console = Console(stderr=True)
        self.bar = None
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.description}"), console=self.console,
            )  # fmt: skip
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def __call__(self, event: str, state, states) -> None:
        c = counts(states)
        left = c["pending"] + c["running"]
        text = f"{c['done']} done, {c['running']} running, {left} left" + (
            f", {c['failed']} failed, {c['blocked']} blocked" if c["failed"] else ""
        )
        if self.bar is not None:
            self.bar.update(self.task, completed=c["done"], description=text)
        if event != "skipped":
            extra = f" ({state.seconds:.0f} s)" if state.seconds is not None else ""
            extra += f": {state.error}" if state.error else ""
            self.console.print(
                f"[{(time.perf_counter() - self.t0) / 60:5.1f} min] {event} {state.job.name}"
                f"{extra}  [{text}]",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def job_table(jobs: list[Job], out: str | Path) -> str:
    """The jobs, their outputs (relative to ``out``), resources, dependencies and whether they
    are already finished, one per line (`xtra sweep --dry-run`)."""
    out = Path(out)
    rows = [("job", "kind", "output", "cpus", "gpus", "state", "after")]
    for j in jobs:
        rel = str(Path(j.out).relative_to(out)) if Path(j.out).is_relative_to(out) else j.out
        state = "done" if job_kinds.done(j.kind, j.out) else "to run"
        rows.append((j.name, j.kind, rel, f"{j.cpus:g}", f"{j.gpus:g}", state,
                     ", ".join(j.deps) or "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows
    )
