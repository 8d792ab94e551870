"""A results tree -> score rows: every finished run directory under the given directories.

A run directory is one with ``config.yaml`` and ``final.json`` (docs/files.md); an experiment's
work directory, a sweep's directory or a single run all qualify, whatever their layout. Each
run gives one :class:`~xtra.report.scores.ScoreRow` per game of its final evaluation: the game,
the method label and seed it recorded in ``final.json``, its stage from ``run.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xtra.errors import XtraError
from xtra.report.scores import ONLINE_STAGES, ScoreRow
from xtra.rundir import read_final, read_run_info


@dataclass
class Found:
    rows: list[ScoreRow] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    """run directories without final.json (still running, or killed)"""
    skipped_stages: dict[str, int] = field(default_factory=dict)
    """{stage: finished runs left out by the stage filter}"""


def find_runs(dirs: Sequence[str | Path], stages: Sequence[str] = ONLINE_STAGES) -> Found:
    """The finished runs under ``dirs`` (each run once, however often it is reached)."""
    found = Found()
    seen: set[Path] = set()
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            subdirs.sort()
            if "config.yaml" not in files:
                continue
            run = Path(root)
            real = run.resolve()
            if real in seen:
                continue
            seen.add(real)
            subdirs[:] = [s for s in subdirs if s not in ("checkpoints", "tb")]
            final = read_final(run)
            if final is None:
                found.unfinished.append(run)
                continue
            stage = read_run_info(run).get("stage", "train")
            if stage not in stages:
                found.skipped_stages[stage] = found.skipped_stages.get(stage, 0) + 1
                continue
            for game, summary in final["finals"].items():
                found.rows.append(
                    ScoreRow(
                        game=game,
                        method=str(final.get("method", "EfficientZero")),
                        seed=int(final.get("seed", 0)),
                        score=float(summary["mean"]),
                        stage=stage,
                        env_steps=int(final.get("env_steps", 0)),
                        run_dir=str(run),
                    )
                )
    return found


def require_runs(found: Found, dirs: Sequence[str | Path], stages: Sequence[str]) -> None:
    """A one-line XtraError when ``found`` has no score to report."""
    if found.rows:
        return
    where = " ".join(str(d) for d in dirs)
    also = []
    if found.unfinished:
        also.append(f"{len(found.unfinished)} unfinished (no final.json)")
    if found.skipped_stages:
        left = ", ".join(f"{n} {s}" for s, n in sorted(found.skipped_stages.items()))
        also.append(f"{left} runs left out by --stages {','.join(stages)}")
    detail = f" ({'; '.join(also)})" if also else ""
    raise XtraError(
        f"no finished run directory (config.yaml + final.json) under {where}{detail}: "
        "give the directories of finished runs, an experiment or a sweep"
    )
