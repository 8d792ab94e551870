"""Tables and plots of a transfer experiment (:mod:`xtra.pipeline.experiment`).

* :func:`improvement` -- XTRA's score over the baseline's (the paper's improvement, Table 1) with
  a percentile-bootstrap confidence interval over seeds;
* :func:`results_table` -- the Markdown table `xtra demo` prints and RESULTS.md records;
* :func:`plot_finetune_curves` -- score against target-game env steps, one line per condition
  (mean over seeds, a band from the lowest to the highest seed);
* :func:`plot_task_weights` -- eta of each offline game against training steps (Fig. 5 and 9),
  read from the finetuning runs' ``metrics.csv``, with the other estimator's eta on the same
  gradients and each game's noise floor;
* :func:`sample_efficiency` -- environment steps to reach a share of the optimum and the area
  under the normalised learning curve, per run.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xtra.report.curves import eval_curve


def improvement(
    treated: Sequence[float],
    baseline: Sequence[float],
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, low, high): mean(treated) / mean(baseline) and its percentile-bootstrap interval.

    Seeds are resampled with replacement within each group. Resamples whose baseline mean is
    not positive have no ratio and are dropped; NaN when the baseline's own mean is not positive.
    """
    t = np.asarray(treated, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if len(t) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one score")
    if b.mean() <= 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    tm = t[rng.integers(len(t), size=(resamples, len(t)))].mean(axis=1)
    bm = b[rng.integers(len(b), size=(resamples, len(b)))].mean(axis=1)
    ok = bm > 0
    ratios = tm[ok] / bm[ok]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(ratios, [alpha, 1.0 - alpha])
    return float(t.mean() / b.mean()), float(lo), float(hi)


def normalised(score: float | np.ndarray, random: float, optimal: float):
    """(score - random) / (optimal - random): 0 = the random policy, 1 = the optimum."""
    return (np.asarray(score, dtype=np.float64) - random) / (optimal - random)


def sample_efficiency(
    run_dir: str | Path, *, random: float, optimal: float, budget: int, threshold: float = 0.9
) -> dict[str, float]:
    """From a run's evaluations (periodic and final, against target env steps):

    * ``steps_to_threshold``: the first evaluation's env steps whose normalised mean reaches
      ``threshold``; ``budget`` (censored, ``reached`` False) when none does;
    * ``auc``: the area under the normalised curve over [0, budget] env steps divided by
      ``budget`` (1 = optimal from the first step); the curve starts at 0 (random) at step 0
      and holds its last value to the budget;
    * ``final``: the final evaluation's normalised mean;
    * ``env_steps``: the env steps of the last evaluation (below ``budget`` when the run ended
      early, e.g. on a ``--max-minutes`` budget)."""
    points = eval_curve(run_dir)
    xs = np.array([0.0, *[p.env_steps for p in points]])
    ys = np.array([0.0, *[float(normalised(p.mean, random, optimal)) for p in points]])
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    hit = np.flatnonzero(ys[1:] >= threshold)
    reached = len(hit) > 0
    steps = float(xs[1:][hit[0]]) if reached else float(budget)
    xs_b = np.append(np.minimum(xs, budget), budget)
    ys_b = np.append(ys, ys[-1])
    auc = float(np.sum((xs_b[1:] - xs_b[:-1]) * (ys_b[1:] + ys_b[:-1]) / 2.0) / budget)
    return {
        "steps_to_threshold": steps,
        "reached": reached,
        "auc": auc,
        "final": float(ys[-1]),
        "env_steps": int(xs[-1]),
    }


def scores_by_condition(summary: dict) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in summary["finetune"]:
        out[r["condition"]].append(float(r["final"]))
    return dict(out)


def results_table(summary: dict) -> str:
    """Markdown: the pretraining stage (random, teacher, student and any baseline students per
    source game), then the finetuning conditions on the target (mean, std and each seed), then XTRA's improvement."""
    spec = summary["spec"]
    baselines = summary.get("student_baselines", {})
    names = {"self": "multi-game offline RL", "bc": "multi-task BC"}
    extra = [names.get(b, b) for b in baselines]
    lines = [
        "| source game | random | teacher | student | student / teacher |"
        + "".join(f" {e} |" for e in extra),
        "|---|---|---|---|---|" + "---|" * len(extra),
    ]
    for g in spec["sources"]:
        rnd, teacher = summary["random"][g], summary["teachers"][g]["final"]
        student = summary["student"]["finals"][g]
        share = f"{(student - rnd) / (teacher - rnd):.2f}" if teacher > rnd else "-"
        lines.append(
            f"| {g} | {rnd:.2f} | {teacher:.2f} | {student:.2f} | {share} |"
            + "".join(f" {b['finals'][g]:.2f} |" for b in baselines.values())
        )
    lines.append("\nstudent / teacher: the student's gain over random as a share of its teacher's.")
    target = spec["target"]
    lines += [
        "",
        f"| finetuning on {target} | seeds | mean | std | per seed |",
        "|---|---|---|---|---|",
        f"| uniform random | - | {summary['random'][target]:.2f} | - | - |",
        f"| student, zero-shot (no finetuning) | 1 | {summary['student']['zero_shot']:.2f} | - | - |",
    ]
    labels = {r["condition"]: r["label"] for r in summary["finetune"]}
    scores = scores_by_condition(summary)
    for c, s in scores.items():
        per = ", ".join(f"{x:.2f}" for x in s)
        lines.append(f"| {labels[c]} | {len(s)} | {np.mean(s):.2f} | {np.std(s):.2f} | {per} |")
    if "xtra" in scores and "efficientzero" in scores:
        ratio, lo, hi = improvement(scores["xtra"], scores["efficientzero"])
        if np.isnan(ratio):
            text = "undefined (EfficientZero's mean score is not positive)"
        elif min(len(scores["xtra"]), len(scores["efficientzero"])) < 2:
            text = f"{ratio:.2f} (one seed: no interval)"
        else:
            text = f"{ratio:.2f} (95% bootstrap CI over seeds {lo:.2f}-{hi:.2f})"
        lines += ["", f"XTRA / EfficientZero final score: {text}"]
    return "\n".join(lines)


def seeds_label(n: int) -> str:
    """'1 seed', '3 seeds': the run count in a legend or panel title."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def plot_finetune_curves(summary: dict, path: str | Path) -> Path:
    """Score on the target against env steps per condition: mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_condition: dict[str, list] = defaultdict(list)
    labels = {}
    for r in summary["finetune"]:
        by_condition[r["condition"]].append(eval_curve(r["run_dir"]))
        labels[r["condition"]] = r["label"]
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for c, curves in by_condition.items():
        n = min(len(points) for points in curves)
        xs = np.array([[p.env_steps for p in pts[:n]] for pts in curves]).mean(axis=0)
        ys = np.array([[p.mean for p in pts[:n]] for pts in curves])
        ax.plot(xs, ys.mean(axis=0), marker="o", label=f"{labels[c]} ({seeds_label(len(curves))})")
        if len(curves) > 1:
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), alpha=0.2)
    target = summary["spec"]["target"]
    ax.axhline(summary["random"][target], color="gray", linestyle="--", label="random")
    ax.set_title(f"finetuning on {target}", fontsize=9)
    ax.set_xlabel("target env steps")
    ax.set_ylabel("return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def task_weight_series(
    run_dir: str | Path, prefix: str = "task/weight/"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{game: (training steps [R], value [R])} from a finetuning run's metrics.csv: eta
    (``task/weight/*``), or another per-game series such as ``task/noise_floor/`` or
    ``task/cos/``. Training steps, not env steps: the first steps train on the random warm-up
    while the env-step count stands still (1:1 pacing afterwards)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    games = [k[len(prefix) :] for k in (rows[0] if rows else {}) if k.startswith(prefix)]
    out = {}
    for g in games:
        pts = [(float(r["step"]), float(r[prefix + g])) for r in rows if r.get(prefix + g)]
        xs, ys = (np.array(v) for v in zip(*pts)) if pts else (np.zeros(0), np.zeros(0))
        out[g] = (xs, ys)
    return out


def plot_task_weights(summary: dict, path: str | Path, condition: str = "xtra") -> Path | None:
    """eta per offline game against training steps, one panel per seed of ``condition``
    (Fig. 5 and 9); None when no run of that condition logged task weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in summary["finetune"] if r["condition"] == condition]
    series = [(r["seed"], task_weight_series(r["run_dir"])) for r in runs]
    series = [(s, d) for s, d in series if d]
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.0), squeeze=False)
    for ax, (seed, data) in zip(axes[0], series):
        floors = task_weight_series(_run_of(runs, seed), "task/noise_floor/")
        shadows = task_weight_series(_run_of(runs, seed), "task/shadow_weight/")
        for g, (xs, ys) in data.items():
            line = ax.step(xs, ys, where="post", label=g)[0]
            sx, sy = shadows.get(g, (np.zeros(0), np.zeros(0)))
            if len(sy):
                ax.step(sx, sy, "--", where="post", color=line.get_color(), alpha=0.6)
            fx, fy = floors.get(g, (np.zeros(0), np.zeros(0)))
            keep = np.isfinite(fy)
            if keep.any():
                ax.plot(fx[keep], fy[keep], ":", color=line.get_color(), alpha=0.7)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(
            f"task weights, seed {seed}\n(dashed: the other estimator; dotted: noise floor)",
            fontsize=8,
        )
        ax.set_xlabel("training steps")
        ax.set_ylabel("eta")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _run_of(runs: list[dict], seed: int) -> str:
    return next(r["run_dir"] for r in runs if r["seed"] == seed)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
