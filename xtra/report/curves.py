"""Learning curves: evaluation rows -> points -> a PNG."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class CurvePoint:
    step: int
    env_steps: int
    wall_s: float
    kind: str  # "periodic" or "final"
    mean: float
    std: float
    episodes: int


def eval_curve(run_dir: str | Path) -> list[CurvePoint]:
    """Mean score per evaluation (periodic and final) from RUN/eval.csv, in step order."""
    with open(Path(run_dir) / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((int(r["step"]), r["kind"]), []).append(r)
    points = []
    for (step, kind), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "final")):
        scores = np.array([float(r["score"]) for r in rs])
        points.append(
            CurvePoint(
                step,
                int(rs[0]["env_steps"]),
                float(rs[0].get("wall_s") or 0.0),
                kind,
                float(scores.mean()),
                float(scores.std()),
                len(scores),
            )
        )
    return points


def plot_curves(
    curves: Sequence[tuple[str, list[CurvePoint], float | None]],
    path: str | Path,
    x: str = "env_steps",
) -> Path:
    """One panel per (title, points, baseline) with the score against ``x`` (env_steps or wall_s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    for ax, (title, points, baseline) in zip(axes[0], curves):
        scale = 60.0 if x == "wall_s" else 1.0
        xs = [getattr(p, x) / scale for p in points]
        ax.plot(xs, [p.mean for p in points], marker="o", label="EfficientZero")
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", label="random")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("minutes" if x == "wall_s" else "env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
