"""The report's PNG figures (matplotlib, Agg backend), each written atomically.

* :func:`plot_learning_curves` -- one panel per game: each method's mean evaluation score over
  seeds against env steps, with a 95% percentile-bootstrap band over seeds;
* :func:`plot_task_weights` -- one panel per (game, method) whose runs logged task weights: eta
  of each offline game against training steps, mean over seeds with a min-max band (Fig. 5, 9);
* :func:`plot_aggregates` -- rliable's interval plot: one panel per metric, a bar per method;
* :func:`plot_profiles` -- performance profiles with their confidence bands.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xtra.atomic import atomic_write_bytes
from xtra.report.aggregate import Estimate
from xtra.report.curves import CurvePoint
from xtra.report.transfer import seeds_label, task_weight_series


def curve_band(
    curves: Sequence[list[CurvePoint]], *, reps: int, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(env steps [P], mean [P], low [P], high [P]) over seeds' curves, cut to the shortest (P
    points); env steps are the seeds' mean at each evaluation. The band resamples seeds."""
    n = min(len(c) for c in curves)
    xs = np.array([[p.env_steps for p in c[:n]] for c in curves], dtype=np.float64).mean(axis=0)
    ys = np.array([[p.mean for p in c[:n]] for c in curves], dtype=np.float64)  # [S, P]
    mean = ys.mean(axis=0)
    if len(curves) < 2:
        return xs, mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(curves), size=(reps, len(curves)))
    boot = ys[idx].mean(axis=1)  # [reps, P]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return xs, mean, lo, hi


def plot_learning_curves(
    curves: Mapping[str, Mapping[str, Sequence[list[CurvePoint]]]],
    path: str | Path,
    *,
    reps: int,
    seed: int = 0,
) -> Path:
    """``curves``: {game: {method: [one curve per seed]}}."""
    plt = _pyplot()
    games = list(curves)
    cols = min(4, len(games))
    rows = -(-len(games) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.6 * cols, 5.0), 3.0 * rows), squeeze=False)
    for ax, g in zip(axes.flat, games):
        for m, seeds in curves[g].items():
            xs, mean, lo, hi = curve_band(seeds, reps=reps, seed=seed)
            ax.plot(xs, mean, marker=".", label=f"{m} ({len(seeds)})")
            ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(games) :]:
        ax.axis("off")
    fig.suptitle("evaluation score: mean over seeds (95% bootstrap band)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_task_weights(
    runs: Mapping[tuple[str, str], Sequence[str]], path: str | Path
) -> Path | None:
    """``runs``: {(game, method): run directories}; None when none logged task weights."""
    panels = []
    for (game, method), dirs in runs.items():
        series = [task_weight_series(d) for d in dirs if (Path(d) / "metrics.csv").exists()]
        series = [s for s in series if s]
        if series:
            panels.append((f"{game}, {method} ({seeds_label(len(series))})", series))
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.0), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        for g in series[0]:
            per_seed = [s[g] for s in series if g in s and len(s[g][0])]
            n = min(len(xs) for xs, _ in per_seed)
            xs = per_seed[0][0][:n]
            ys = np.array([y[:n] for _, y in per_seed])
            line = ax.step(xs, ys.mean(axis=0), where="post", label=g)[0]
            if len(per_seed) > 1:
                ax.fill_between(
                    xs, ys.min(axis=0), ys.max(axis=0), step="post", alpha=0.2,
                    color=line.get_color(),
                )  # fmt: skip
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("training steps")
        ax.set_ylabel("task weight eta")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def plot_aggregates(
    estimates: Mapping[str, Mapping[str, Estimate]], path: str | Path, title: str
) -> Path:
    """One panel per metric, one horizontal bar (the CI) and tick (the point) per method."""
    plt = _pyplot()
    methods = list(estimates)
    metrics = list(next(iter(estimates.values())))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(2.8 * len(metrics), 0.5 + 0.4 * len(methods)), squeeze=False
    )
    for ax, k in zip(axes[0], metrics):
        for i, m in enumerate(methods):
            e = estimates[m][k]
            ax.barh(i, e.high - e.low, left=e.low, height=0.6, alpha=0.5)
            ax.plot([e.point, e.point], [i - 0.3, i + 0.3], color="black")
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods if k == metrics[0] else [], fontsize=7)
        ax.set_title(k, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_profiles(
    taus: np.ndarray,
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    xlabel: str,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for m, (p, lo, hi) in profiles.items():
        line = ax.plot(taus, p, label=m)[0]
        ax.fill_between(taus, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
