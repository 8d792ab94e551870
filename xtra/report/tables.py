"""Report tables: one :class:`Table` type, rendered as Markdown, CSV or LaTeX.

* :func:`per_game_table` -- game x method, the mean over seeds with a percentile-bootstrap CI,
  on raw or normalised scores, beside the game's references;
* :func:`paper_table` -- XTRA Table 1's layout: games grouped by category, each method's score
  with the paper's reported number beside it where the paper has one, and per category (and
  overall) the mean and median improvement over the baseline;
* :func:`aggregate_table` -- method x (IQM, median, mean, optimality gap) from rliable;
* :func:`improvement_table` -- the probability that each method beats the baseline.

A cell is text, a number, an :class:`~xtra.report.aggregate.Estimate` or None (no value).
Markdown and LaTeX print an estimate as ``point [low, high]``; CSV gives it three columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xtra.errors import XtraError
from xtra.games import get_game
from xtra.report.aggregate import METRICS, Estimate, improvement_summary
from xtra.report.scores import ScoreRow, mean_interval, ordered_games, raw_matrix

Cell = str | float | int | Estimate | None
FORMATS = ("md", "csv", "tex")


@dataclass
class Table:
    """A titled table; ``sections`` start a group of rows (a rule in Markdown and LaTeX)."""

    name: str
    """file stem (``table1``)"""
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: set[int] = field(default_factory=set)
    """indices of rows that start a new group"""

    def render(self, fmt: str) -> str:
        return {"md": self.markdown, "csv": self.csv, "tex": self.latex}[fmt]()

    def markdown(self) -> str:
        lines = [
            f"### {self.title}",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "---|" * len(self.columns),
        ]
        lines += ["| " + " | ".join(_text(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        wide = [
            any(isinstance(row[j], Estimate) for row in self.rows) for j in range(len(self.columns))
        ]
        header = []
        for c, w in zip(self.columns, wide):
            header += [c, f"{c} low", f"{c} high"] if w else [c]
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(header)
        for row in self.rows:
            cells: list = []
            for c, w in zip(row, wide):
                if isinstance(c, Estimate):
                    cells += [_num(c.point), _num(c.low), _num(c.high)]
                elif w:
                    cells += [_num(c), "", ""]
                else:
                    cells.append(_num(c))
            out.writerow(cells)
        return buf.getvalue()

    def latex(self) -> str:
        lines = [
            f"% {_tex(self.title)}",
            "\\begin{tabular}{l" + "r" * (len(self.columns) - 1) + "}",
            "\\toprule",
            " & ".join(_tex(c) for c in self.columns) + " \\\\",
            "\\midrule",
        ]
        for i, row in enumerate(self.rows):
            if i in self.sections and i > 0:
                lines.append("\\midrule")
            lines.append(" & ".join(_tex(_text(c)) for c in row) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        lines += [f"% {_tex(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"


def fmt_number(v: float) -> str:
    """Scores to a precision that suits their size: 1294.6, 1.36, 0.052."""
    if v is None or not np.isfinite(v):
        return "-" if v is None or np.isnan(v) else str(v)
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 or a == 0 else f"{v:.3f}"


def _text(c: Cell) -> str:
    if c is None:
        return "-"
    if isinstance(c, Estimate):
        if c.low == c.high == c.point:
            return fmt_number(c.point)
        return f"{fmt_number(c.point)} [{fmt_number(c.low)}, {fmt_number(c.high)}]"
    if isinstance(c, (float, np.floating)):
        return fmt_number(float(c))
    return str(c)


def _num(c: Cell) -> str:
    if c is None:
        return ""
    if isinstance(c, (float, np.floating)):
        return repr(float(c))
    return str(c)


_TEX = {"&": "\\&", "%": "\\%", "_": "\\_", "#": "\\#", "$": "\\$", "{": "\\{", "}": "\\}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


# --------------------------------------------------------------------------- the tables


def _references(game: str) -> tuple[float | None, float | None]:
    try:
        g = get_game(game)
    except XtraError:  # a game unknown to the registry has no references
        return None, None
    return g.random_score, g.human_score if g.human_score is not None else g.optimal_score


def per_game_table(
    grouped: Mapping[str, Mapping[str, list[ScoreRow]]],
    methods: Sequence[str],
    *,
    norm: Mapping[str, object],
    kind: str,
    reps: int,
    seed: int = 0,
) -> Table:
    """Rows: the games ``norm`` covers; columns: random and human/optimal references (raw only),
    then per method the mean over seeds [95% CI] and the number of seeds."""
    games = ordered_games(g for m in methods for g in grouped.get(m, {}) if g in norm)
    refs = kind == "raw"
    columns = ["game"] + (["random", "human / optimal"] if refs else [])
    for m in methods:
        columns += [m, "seeds"]
    table = Table(f"per_game_{kind}", f"Per-game scores ({_KIND_TITLE[kind]})", columns)
    for g in games:
        row: list[Cell] = [g] + (list(_references(g)) if refs else [])
        for m in methods:
            rs = grouped.get(m, {}).get(g, [])
            if rs:
                vals = [norm[g](r.score) for r in rs]
                row += [Estimate(*mean_interval(vals, reps=reps, seed=seed)), len(rs)]
            else:
                row += [None, 0]
        table.rows.append(row)
    table.notes.append(
        "Mean over seeds [95% percentile-bootstrap CI over seeds]; one seed has no interval."
    )
    return table


_KIND_TITLE = {
    "raw": "raw scores",
    "human": "human-normalised",
    "baseline": "normalised by the baseline's mean",
    "optimum": "random = 0, optimum = 1",
}


def paper_table(
    grouped: Mapping[str, Mapping[str, list[ScoreRow]]],
    methods: Sequence[str],
    baseline: str | None,
    *,
    reps: int,
    seed: int = 0,
) -> Table:
    """XTRA Table 1's layout. Columns: category, game, then per method ours (mean over seeds
    [95% CI]) and, where the paper reports that method, ``<method> (paper)``. After each
    category's games (and for all games), the mean and median over games of method / baseline
    (the paper's improvement, computed on the paper's numbers for the same games beside ours)."""
    games = ordered_games(g for m in methods for g in grouped.get(m, {}))
    paper = {m: {g: _paper_score(g, m) for g in games} for m in methods}
    has_paper = {m: any(v is not None for v in paper[m].values()) for m in methods}
    columns = ["category", "game"]
    for m in methods:
        columns += [m] + ([f"{m} (paper)"] if has_paper[m] else [])
    table = Table("table1", "Scores by game and category (XTRA Table 1 layout)", columns)
    categories: dict[str, list[str]] = {}
    for g in games:
        categories.setdefault(_category(g), []).append(g)
    groups = list(categories.items())
    if len(groups) > 1:
        groups.append(("Overall", games))
    for category, cat_games in groups:
        table.sections.add(len(table.rows))
        if category != "Overall":
            for i, g in enumerate(cat_games):
                row: list[Cell] = [category if i == 0 else "", g]
                for m in methods:
                    rs = grouped.get(m, {}).get(g, [])
                    vals = [r.score for r in rs]
                    row.append(Estimate(*mean_interval(vals, reps=reps, seed=seed)) if rs else None)
                    if has_paper[m]:
                        row.append(paper[m][g])
                table.rows.append(row)
        if baseline is not None:
            table.rows += _improvement_rows(
                grouped, methods, baseline, cat_games, paper, has_paper, category, reps, seed
            )
    table.notes += [
        "Ours: mean final score over seeds [95% percentile-bootstrap CI over seeds]. "
        "(paper): the number XTRA reports for that method (Table 1 and 2; EfficientZero "
        "(published): Ye et al. 2021), at 100k environment steps.",
        f"Mean / median improvement: per game mean(method) / mean({baseline}), then the mean or "
        "median over the category's games where both have runs and the baseline's mean is "
        "positive [95% CI: rliable's stratified bootstrap over each method's seeds]; the paper's "
        "improvement is computed the same way from its numbers for the same games.",
    ]
    return table


def _improvement_rows(grouped, methods, baseline, games, paper, has_paper, category, reps, seed):
    """The category's "mean improvement" and "median improvement" rows."""
    base = grouped[baseline]
    ours: dict[str, tuple[Estimate, Estimate] | None] = {}
    for m in methods:
        shared = [
            g
            for g in games
            if grouped.get(m, {}).get(g) and base.get(g) and np.mean([r.score for r in base[g]]) > 0
        ]
        ours[m] = (
            improvement_summary(
                raw_matrix(grouped[m], shared), raw_matrix(base, shared), reps=reps, seed=seed
            )
            if shared
            else None
        )
    rows = []
    for label, which in (("mean improvement", 0), ("median improvement", 1)):
        row: list[Cell] = [category if category == "Overall" and which == 0 else "", label]
        for m in methods:
            row.append(ours[m][which] if ours[m] is not None else None)
            if has_paper[m]:
                pairs = [(paper[m][g], paper.get(baseline, {}).get(g)) for g in games]
                ratios = [a / b for a, b in pairs if a is not None and b is not None and b > 0]
                row.append(
                    float(np.mean(ratios) if which == 0 else np.median(ratios)) if ratios else None
                )
        rows.append(row)
    return rows


def _category(game: str) -> str:
    try:
        return get_game(game).category
    except XtraError:  # unknown games form their own group
        return "Other"


def _paper_score(game: str, method: str) -> float | None:
    try:
        return get_game(game).paper_scores.get(method)
    except XtraError:
        return None


def aggregate_table(
    estimates: Mapping[str, Mapping[str, Estimate]],
    counts: Mapping[str, tuple[int, int]],
    *,
    kind: str,
    gap: bool,
) -> Table:
    """Rows: methods; columns: games, runs, then IQM, median, mean (and optimality gap)."""
    metrics = METRICS if gap else METRICS[:3]
    table = Table(
        f"aggregates_{kind}",
        f"Aggregates over games ({_KIND_TITLE[kind]})",
        ["method", "games", "runs", *metrics],
    )
    for m, est in estimates.items():
        g, r = counts[m]
        table.rows.append([m, g, r, *(est[k] for k in metrics)])
    table.notes.append(
        "rliable estimators over the runs x games matrix, 95% stratified-bootstrap CIs "
        "(runs resampled within each game)."
        + (" Optimality gap: mean shortfall below 1." if gap else "")
    )
    return table


def improvement_table(
    poi: Mapping[str, tuple[Estimate, int]],
    baseline: str,
) -> Table:
    """Rows: methods; P(method > baseline) [95% CI] over the games both have."""
    table = Table(
        "probability_of_improvement",
        f"Probability of improvement over {baseline}",
        ["method", "games", f"P(method > {baseline})"],
    )
    for m, (est, games) in poi.items():
        table.rows.append([m, games, est])
    table.notes.append(
        "P(X > Y): per game, the chance that a random run of X scores above a random run of Y "
        "(ties count one half), averaged over games; 0.5 = no difference. 95% CI: rliable's "
        "stratified bootstrap, runs of each method resampled independently within each game."
    )
    return table


__all__ = [
    "FORMATS",
    "Table",
    "aggregate_table",
    "fmt_number",
    "improvement_table",
    "paper_table",
    "per_game_table",
]
