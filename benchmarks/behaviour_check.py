"""Behaviour check: a fixed-seed tiny XTRA pipeline through the real CLI, digested for comparison.

A safety net for refactors that must not change behaviour. It runs, as subprocesses of the
``xtra`` command line (``python -m xtra`` when the package has ``xtra/__main__.py``, else
``python -c "...from xtra.cli import main..."``), a tiny pipeline on the toy games with seed 0
on the CPU, one thread per process:

1. ``xtra train toy/chain`` (online EfficientZero),
2. ``xtra data collect`` of 200 random-policy steps of toy/catch and of toy/chain,
3. ``xtra teacher`` on each dataset,
4. ``xtra distill`` of both teachers into one student,
5. ``xtra finetune toy/catch`` from the student with toy/chain as offline data (task weights on).

Of every run it reads ``metrics.csv`` and ``eval.csv``, drops the timing and throughput columns
(:data:`DROPPED_COLUMNS`), rounds floats to 6 significant digits and keeps the header and every
row as strings. Of every dataset it keeps ``dataset.json`` flattened, with the SHA-256 of each
``.npy`` array (pickles, pointers and timestamps left out). ``--write`` saves this digest as
JSON; ``--compare`` runs the same pipeline and compares it with a saved digest, table per
file, exit code 1 on any difference.

    python benchmarks/behaviour_check.py --write benchmarks/results/behaviour_reference.json
    python benchmarks/behaviour_check.py --compare benchmarks/results/behaviour_reference.json

Which ``xtra`` is checked is whichever the interpreter imports: the editable install, or the
tree on ``PYTHONPATH`` (the first lines of the output say which). It takes about a minute on
one core.

Determinism: with one thread per process (:data:`THREAD_ENV`) two runs give the same digest.
Without the pin, torch's multi-threaded reductions change losses in the 7th digit within the
first few steps, and the runs drift apart from there (different evaluation scores).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DIGEST_FORMAT = 1
SIG_DIGITS = 6

# Timing and throughput columns, as found in the real headers (train, teacher, distill and
# finetune runs all share them). They are dropped from the digest: they differ run to run.
DROPPED_COLUMNS = {
    "metrics.csv": (
        "time/selfplay",
        "time/sample",
        "time/reanalyze",
        "time/update",
        "perf/steps_per_s",
        "perf/wall_s",
    ),
    "eval.csv": ("wall_s",),
}
# Any other column whose name looks like a timing is dropped as well (and said so), so that a
# new timing column does not make the check fail; an unexpected drop is reported.
TIMING_NAME = re.compile(r"time|sec|per_s|fps|wall|elapsed|minutes|steps_per", re.IGNORECASE)
RUN_FILES = ("metrics.csv", "eval.csv")
# dataset.json keys left out: when and by which version it was written; hashes of files that
# are not plain arrays (torch pickles name module paths, LATEST and meta.json are bookkeeping).
DATASET_DROPPED_KEYS = ("created_by",)

COMMON = ("--preset", "tiny", "--quiet", "--set", "seed=0", "--set", "device=cpu")
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONHASHSEED": "0",
}


def _sets(*pairs: str) -> list[str]:
    out: list[str] = []
    for p in pairs:
        out += ["--set", p]
    return out


TRAIN_SET = _sets(
    "schedule.training_steps=30",
    "schedule.env_steps=200",
    "replay.start_transitions=40",
    "optim.batch_size=16",
    "schedule.checkpoint_interval=10",
    "schedule.log_interval=5",
    "eval.interval=20",
    "eval.num_episodes=2",
    "search.num_simulations=4",
    "env.num_envs=2",
)
DATA_SET = _sets("env.num_envs=2")
TEACHER_SET = _sets(
    "schedule.training_steps=16",
    "optim.batch_size=8",
    "schedule.checkpoint_interval=8",
    "schedule.log_interval=4",
    "eval.interval=100",
    "eval.num_episodes=1",
    "eval.final_max_steps=20",
    "search.num_simulations=3",
    "env.num_envs=2",
)
DISTILL_SET = _sets(
    "schedule.training_steps=20",
    "optim.batch_size=16",
    "schedule.checkpoint_interval=10",
    "schedule.log_interval=5",
    "eval.interval=1000",
    "eval.num_episodes=1",
    "eval.final_max_steps=20",
    "search.num_simulations=4",
    "env.num_envs=2",
)
FINETUNE_SET = _sets(
    "schedule.training_steps=24",
    "schedule.env_steps=200",
    "replay.start_transitions=40",
    "optim.batch_size=8",
    "transfer.offline_batch_size=8",
    "schedule.checkpoint_interval=12",
    "schedule.log_interval=2",
    "eval.interval=12",
    "eval.num_episodes=2",
    "eval.final_max_steps=20",
    "search.num_simulations=4",
    "env.num_envs=2",
    # task weights: measure steps 4-6, update eta at 7, measure 12-14, update at 15, ...
    "transfer.task_weight_start=4",
    "transfer.task_weight_cycle=8",
    "transfer.task_weight_window=3",
)


@dataclass(frozen=True)
class Stage:
    """One CLI call; ``{work}`` in an argument is the work directory."""

    name: str
    argv: tuple[str, ...]
    output: str  # run directory or dataset directory, relative to the work directory
    kind: str  # "run" or "dataset"


def _stage(name: str, command: str, output: str, kind: str, sets: list[str]) -> Stage:
    return Stage(name, (*command.split(), *COMMON, *sets), output, kind)


STAGES = (
    _stage(
        "train-chain",
        "train toy/chain --run-dir {work}/runs/train-chain",
        "runs/train-chain",
        "run",
        TRAIN_SET,
    ),
    *(
        _stage(
            f"data-{g}",
            f"data collect toy/{g} --out {{work}}/data/{g} --steps 200 --chunk-steps 1000",
            f"data/{g}",
            "dataset",
            DATA_SET,
        )
        for g in ("catch", "chain")
    ),
    *(
        _stage(
            f"teacher-{g}",
            f"teacher {{work}}/data/{g} --run-dir {{work}}/runs/teacher-{g}",
            f"runs/teacher-{g}",
            "run",
            TEACHER_SET,
        )
        for g in ("catch", "chain")
    ),
    _stage(
        "distill",
        "distill --data toy/catch={work}/data/catch --data toy/chain={work}/data/chain"
        " --teacher toy/catch={work}/runs/teacher-catch"
        " --teacher toy/chain={work}/runs/teacher-chain --run-dir {work}/runs/distill",
        "runs/distill",
        "run",
        DISTILL_SET,
    ),
    _stage(
        "finetune-catch",
        "finetune toy/catch --pretrained {work}/runs/distill --offline toy/chain={work}/data/chain"
        " --run-dir {work}/runs/finetune-catch",
        "runs/finetune-catch",
        "run",
        FINETUNE_SET,
    ),
)


# --------------------------------------------------------------------------- running


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(THREAD_ENV)
    return env


def probe(python: str) -> dict:
    """Which ``xtra`` the interpreter imports, how to call its CLI, and the library versions."""
    code = (
        "import importlib.util, json, platform, xtra, torch, numpy\n"
        "print(json.dumps({'xtra_file': xtra.__file__,"
        " 'has_main': importlib.util.find_spec('xtra.__main__') is not None,"
        " 'torch': torch.__version__, 'numpy': numpy.__version__,"
        " 'python': platform.python_version()}))\n"
    )
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=_env(), check=False
    )
    if out.returncode != 0:
        sys.exit(f"error: cannot import xtra with {python}:\n{out.stderr[-2000:]}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if info["has_main"]:
        info["cli"] = [python, "-m", "xtra"]
    else:
        info["cli"] = [python, "-c", "import sys; from xtra.cli import main; sys.exit(main())"]
    return info


def _label(st: Stage) -> str:
    """The leading words of a stage's command: ``xtra data collect toy/catch``."""
    words = []
    for a in st.argv:
        if a.startswith("-") or "{work}" in a:
            break
        words.append(a)
    return " ".join(["xtra", *words])


def run_stages(cli: list[str], work: Path, verbose: bool) -> list[dict]:
    """Run every stage in order; exit 2 with the output's tail if one fails."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    timings = []
    for st in STAGES:
        argv = [a.replace("{work}", str(work)) for a in st.argv]
        t0 = time.perf_counter()
        out = subprocess.run([*cli, *argv], capture_output=True, text=True, env=_env(), check=False)
        seconds = time.perf_counter() - t0
        (logs / f"{st.name}.log").write_text(out.stdout + out.stderr)
        timings.append(
            {"stage": st.name, "command": _label(st), "seconds": seconds, "rc": out.returncode}
        )
        if verbose:
            print(out.stdout + out.stderr, end="")
        if out.returncode != 0:
            print_timings(timings)
            tail = (out.stdout + out.stderr)[-3000:]
            sys.exit(f"error: stage {st.name} failed (exit {out.returncode}):\n{tail}")
    return timings


# --------------------------------------------------------------------------- digest


def norm_cell(cell: str) -> str:
    """Integers and text as they are, floats rounded to SIG_DIGITS significant digits."""
    if cell == "":
        return cell
    try:
        int(cell)
        return cell
    except ValueError:
        pass
    try:
        x = float(cell)
    except ValueError:
        return cell
    return f"{x:.{SIG_DIGITS}g}"


def digest_csv(path: Path, name: str) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    explicit = set(DROPPED_COLUMNS.get(name, ()))
    dropped = [c for c in header if c in explicit or TIMING_NAME.search(c)]
    unexpected = [c for c in dropped if c not in explicit]
    if unexpected:
        print(f"note: {path} also drops timing-like columns {unexpected}")
    keep = [i for i, c in enumerate(header) if c not in dropped]
    return {
        "header": [header[i] for i in keep],
        "dropped": dropped,
        "rows": [[norm_cell(r[i]) if i < len(r) else "<missing>" for i in keep] for r in body],
    }


def _flatten(value, prefix: str, out: list[list[str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        text = json.dumps(value) if not isinstance(value, (int, float)) else str(value)
        out.append([prefix, norm_cell(text)])


def digest_dataset(path: Path) -> dict:
    meta = json.loads((path / "dataset.json").read_text())
    dropped = [k for k in DATASET_DROPPED_KEYS if k in meta]
    for k in dropped:
        meta.pop(k)
    for chunk in meta.get("chunks", []):
        files = chunk.get("files", {})
        for name in [n for n in files if not n.endswith(".npy")]:
            dropped.append(f"chunks.{chunk.get('name')}.files.{name}")
            files.pop(name)
    rows: list[list[str]] = []
    _flatten(meta, "", rows)
    return {"header": ["key", "value"], "dropped": dropped, "rows": rows}


def build_digest(work: Path) -> dict[str, dict[str, dict]]:
    runs: dict[str, dict[str, dict]] = {}
    for st in STAGES:
        where = work / st.output
        if st.kind == "dataset":
            runs[st.name] = {"dataset.json": digest_dataset(where)}
            continue
        runs[st.name] = {}
        for name in RUN_FILES:
            if (where / name).exists():
                runs[st.name][name] = digest_csv(where / name, name)
    return runs


# --------------------------------------------------------------------------- compare


def first_difference(ref: dict, new: dict) -> str | None:
    """None when equal, else where they first differ (header, row and column)."""
    if ref["header"] != new["header"]:
        for i, (a, b) in enumerate(zip(ref["header"], new["header"])):
            if a != b:
                return f"header col {i}: {a!r} != {b!r}"
        n = min(len(ref["header"]), len(new["header"]))
        extra = (ref["header"] if len(ref["header"]) > n else new["header"])[n:]
        return f"header: {len(ref['header'])} vs {len(new['header'])} cols (extra {extra})"
    header = ref["header"]
    for r, (a, b) in enumerate(zip(ref["rows"], new["rows"])):
        if a != b:
            for c, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    return f"row {r + 1} ({header[0]}={a[0]}) col {header[c]!r}: {x} != {y}"
            return f"row {r + 1}: {len(a)} vs {len(b)} cells"
    if len(ref["rows"]) != len(new["rows"]):
        return f"row {min(len(ref['rows']), len(new['rows'])) + 1}: missing on one side"
    return None


def compare(ref_runs: dict, new_runs: dict) -> int:
    """Print one line per (run, file); return the number of differences."""
    lines, bad = [], 0
    for run in sorted(set(ref_runs) | set(new_runs), key=_stage_order):
        ref_files, new_files = ref_runs.get(run, {}), new_runs.get(run, {})
        for name in sorted(set(ref_files) | set(new_files)):
            ref, new = ref_files.get(name), new_files.get(name)
            if ref is None or new is None:
                where = "reference" if ref is None else "this run"
                lines.append((run, name, "-", "DIFF", f"missing in {where}"))
                bad += 1
                continue
            diff = first_difference(ref, new)
            rows = f"{len(ref['rows'])}/{len(new['rows'])}"
            lines.append((run, name, rows, "equal" if diff is None else "DIFF", diff or ""))
            bad += diff is not None
    _table(("run", "file", "rows ref/new", "result", "first difference"), lines)
    return bad


def _stage_order(name: str) -> int:
    names = [s.name for s in STAGES]
    return names.index(name) if name in names else len(names)


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header).rstrip())
    print(fmt.format(*("-" * w for w in widths)).rstrip())
    for r in rows:
        print(fmt.format(*map(str, r)).rstrip())


def print_timings(timings: list[dict]) -> None:
    rows = [(t["stage"], t["command"], f"{t['seconds']:.1f}", t["rc"]) for t in timings]
    rows.append(("total", "", f"{sum(t['seconds'] for t in timings):.1f}", ""))
    _table(("stage", "command", "seconds", "exit"), rows)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", metavar="FILE.json", help="write the digest of this run")
    ap.add_argument("--compare", metavar="FILE.json", help="compare with a written digest")
    ap.add_argument("--workdir", help="where the runs go (must be empty; kept afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs xtra")
    ap.add_argument("--verbose", action="store_true", help="print the output of every stage")
    args = ap.parse_args()

    reference = None
    if args.compare:
        reference = json.loads(Path(args.compare).read_text())
        if reference.get("format") != DIGEST_FORMAT:
            sys.exit(f"error: {args.compare} is not a format-{DIGEST_FORMAT} digest")

    info = probe(args.python)
    print(f"xtra: {info['xtra_file']}")
    print(f"cli: {' '.join(info['cli'][:2])} ... (xtra/__main__.py: {info['has_main']})")
    print(f"python {info['python']}, torch {info['torch']}, numpy {info['numpy']}")

    if args.workdir:
        work = Path(args.workdir).resolve()
        if work.exists() and any(work.iterdir()):
            sys.exit(f"error: --workdir {work} is not empty (an existing run would be resumed)")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="xtra-behaviour-"))
    try:
        timings = run_stages(info["cli"], work, args.verbose)
        runs = build_digest(work)
    finally:
        if not (args.workdir or args.keep):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory: {work}")

    print()
    print_timings(timings)
    print()
    digest = {
        "format": DIGEST_FORMAT,
        "meta": {
            "xtra_file": info["xtra_file"],
            "python": info["python"],
            "torch": info["torch"],
            "numpy": info["numpy"],
            "platform": platform.platform(),
            "thread_env": THREAD_ENV,
            "stages": {s.name: ["xtra", *s.argv] for s in STAGES},
            "seconds": {t["stage"]: round(t["seconds"], 1) for t in timings},
        },
        "runs": runs,
    }
    status = 0
    if reference is not None:
        ref_meta = reference.get("meta", {})
        if ref_meta.get("stages") != digest["meta"]["stages"]:
            print("warning: the stage commands differ from the reference's")
        for key in ("torch", "numpy", "python"):
            if ref_meta.get(key) != info[key]:
                print(f"warning: {key} {info[key]} here, {ref_meta.get(key)} in the reference")
        bad = compare(reference["runs"], runs)
        print()
        print(f"behaviour check: {bad} difference(s)" if bad else "behaviour check: all equal")
        status = 1 if bad else 0
    if args.write:
        out = Path(args.write)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(digest, indent=1) + "\n")
        print(f"digest: {out}")
    if reference is None and not args.write:
        total = sum(len(f["rows"]) for files in runs.values() for f in files.values())
        print(f"digest: {len(runs)} runs, {total} rows (neither --write nor --compare given)")
    return status


if __name__ == "__main__":
    sys.exit(main())
