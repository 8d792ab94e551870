"""The whole report of a set of runs: tables, figures and ``report.md`` in one directory.

Layout of ``OUT`` (``xtra report DIR... --out OUT``; docs/report.md explains each part)::

    OUT/report.md                  every table in Markdown, the figures, notes on the data
    OUT/scores.csv                 one row per run and game: the scores everything is made of
    OUT/tables/<name>.{md,csv,tex} table1, per_game_<kind>, aggregates_<kind>,
                                   probability_of_improvement
    OUT/figures/*.png              learning curves, task weights, aggregates, profiles
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from xtra.atomic import atomic_write_text
from xtra.report import figures
from xtra.report.aggregate import interval_estimates, performance_profiles
from xtra.report.aggregate import probability_of_improvement as poi
from xtra.report.curves import eval_curve
from xtra.report.scores import (
    ScoreRow,
    by_method_game,
    normaliser,
    ordered_games,
    ordered_methods,
    raw_matrix,
    score_matrix,
)
from xtra.report.tables import (
    FORMATS,
    Table,
    aggregate_table,
    improvement_table,
    paper_table,
    per_game_table,
)

PROFILE_TITLES = {
    "human": "human-normalised score tau",
    "baseline": "score / baseline's mean, tau",
    "optimum": "normalised score tau (random 0, optimum 1)",
}


@dataclass
class Report:
    """What :func:`write_report` made."""

    out: Path
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_report(
    rows: Sequence[ScoreRow],
    out: str | Path,
    *,
    baseline: str | None,
    formats: Sequence[str] = FORMATS,
    reps: int = 2000,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> Report:
    """Tables and figures of ``rows`` under ``out``. ``baseline``: the method label every other
    method is compared with (None: no improvement, baseline normalisation or probability of
    improvement). ``reps``: bootstrap resamples of every confidence interval."""
    out = Path(out)
    report = Report(out, notes=list(notes))
    grouped = by_method_game(rows)
    methods = ordered_methods(rows, baseline)
    per_triple = Counter((r.method, r.game, r.seed) for r in rows)
    repeated = sorted(k for k, n in per_triple.items() if n > 1)
    if repeated:
        m, g, s = repeated[0]
        report.notes.append(
            f"{len(repeated)} (method, game, seed) triples have more than one run (first: {m}, "
            f"{g}, seed {s}); each run counts as a seed of its own: report the directories of "
            "one experiment at a time if they are repeats"
        )
    _write_scores(rows, out / "scores.csv")

    report.tables.append(paper_table(grouped, methods, baseline, reps=reps, seed=seed))
    for kind in ("raw", "human", "baseline", "optimum"):
        if kind == "baseline" and baseline is None:
            continue
        norm = normaliser(kind, rows, baseline)
        if not norm:
            why = (
                f"no game where {baseline}'s mean score is positive"
                if kind == "baseline"
                else "no game has the reference scores it needs"
            )
            report.notes.append(f"no {kind} normalisation: {why}")
            continue
        report.tables.append(
            per_game_table(grouped, methods, norm=norm, kind=kind, reps=reps, seed=seed)
        )
        matrices, counts = {}, {}
        for m in methods:
            games = ordered_games(g for g in grouped[m] if g in norm)
            if not games:
                continue
            matrices[m], dropped = score_matrix(grouped[m], games, norm)
            counts[m] = (len(games), matrices[m].size)
            if dropped:
                report.notes.append(
                    f"{kind} aggregates of {m}: {dropped} runs left out so that every game has "
                    f"{matrices[m].shape[0]} seeds (rliable needs a full runs x games matrix)"
                )
        gap = kind != "raw"
        est = interval_estimates(matrices, reps=reps, seed=seed)
        report.tables.append(aggregate_table(est, counts, kind=kind, gap=gap))
        report.figures.append(
            figures.plot_aggregates(
                est, out / "figures" / f"aggregates_{kind}.png", f"aggregates ({kind})"
            )
        )
        if gap:
            top = max(float(np.quantile(np.concatenate([a.ravel() for a in matrices.values()]),
                                        0.99)), 1.5)  # fmt: skip
            taus = np.linspace(0.0, top, 61)
            prof = performance_profiles(matrices, taus, reps=reps, seed=seed)
            report.figures.append(
                figures.plot_profiles(
                    taus, prof, out / "figures" / f"profile_{kind}.png", PROFILE_TITLES[kind]
                )
            )
    if baseline is not None:
        comparisons = {}
        for m in methods:
            if m == baseline:
                continue
            games = ordered_games(g for g in grouped[m] if g in grouped[baseline])
            if games:
                x = raw_matrix(grouped[m], games)
                y = raw_matrix(grouped[baseline], games)
                comparisons[m] = (poi(x, y, reps=reps, seed=seed), len(games))
        if comparisons:
            report.tables.append(improvement_table(comparisons, baseline))

    curves = _curves(grouped)
    if curves:
        report.figures.append(
            figures.plot_learning_curves(
                curves, out / "figures" / "learning_curves.png", reps=reps, seed=seed
            )
        )
    weights = figures.plot_task_weights(
        {(g, m): [r.run_dir for r in rs] for m, gs in grouped.items() for g, rs in gs.items()},
        out / "figures" / "task_weights.png",
    )
    if weights is not None:
        report.figures.append(weights)

    for t in report.tables:
        for fmt in formats:
            atomic_write_text(out / "tables" / f"{t.name}.{fmt}", t.render(fmt))
    atomic_write_text(out / "report.md", _markdown(report, rows, methods, baseline, reps))
    return report


def _curves(grouped) -> dict[str, dict[str, list]]:
    """{game: {method: [curve per seed]}} from the runs' eval.csv (runs without one skipped)."""
    out: dict[str, dict[str, list]] = {}
    for m, games in grouped.items():
        for g, rs in games.items():
            seeds = []
            for r in rs:
                path = Path(r.run_dir) / "eval.csv"
                if r.run_dir and path.exists() and _one_game(path, g):
                    points = eval_curve(r.run_dir)
                    if points:
                        seeds.append(points)
            if seeds:
                out.setdefault(g, {})[m] = seeds
    return {g: out[g] for g in ordered_games(out)}


def _one_game(path: Path, game: str) -> bool:
    """Whether every row of eval.csv is ``game``'s (an online run's); the curve of a run that
    evaluates several games (a distilled student) would mix them, so it is not drawn."""
    with open(path, newline="") as f:
        return {r.get("game") for r in csv.DictReader(f)} == {game}


def _write_scores(rows: Sequence[ScoreRow], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(ScoreRow)], lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r.game, r.method, r.seed)):
        w.writerow(asdict(r))
    atomic_write_text(path, buf.getvalue())


def _markdown(report: Report, rows, methods, baseline, reps) -> str:
    games = {r.game for r in rows}
    lines = [
        "# Report",
        "",
        f"{len(rows)} scores of {len(methods)} methods on {len(games)} games "
        f"(methods: {', '.join(methods)}). Baseline: {baseline or 'none'}. "
        f"Confidence intervals: 95%, {reps} bootstrap resamples. "
        "How to read each part: docs/report.md.",
        "",
    ]
    for t in report.tables:
        lines += [t.markdown(), ""]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}](figures/{p.name})" for p in report.figures]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
