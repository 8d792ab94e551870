"""Final scores in long format (one row per run and game) and their normalisations.

A report starts from :class:`ScoreRow` s (``xtra.pipeline.results`` finds them in run
directories). Normalisations, each defined on the games that have what it needs:

* ``raw``: the game score;
* ``human``: (score - random) / (human - random) (XTRA App. E; Atari games with both references);
* ``baseline``: score / the baseline method's mean score on the game over its seeds (XTRA Table 1's
  measure when the baseline is EfficientZero; games where that mean is positive);
* ``optimum``: (score - random) / (optimal - random) (toy and family games, whose random and
  optimal returns are exact).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from xtra.errors import XtraError
from xtra.games import DIVERSE_TARGETS, GAMES, MAZE, METHODS, SHOOTER, get_game

NORMALISATIONS = ("raw", "human", "baseline", "optimum")
STAGES = ("train", "finetune", "teacher", "distill")
"""The stages whose run directories hold a final evaluation."""
ONLINE_STAGES = ("train", "finetune")
"""Runs that learn a target game online: the rows of the paper's tables. Teachers and students
(``teacher``, ``distill``) are pretraining, on other games and budgets."""


@dataclass(frozen=True)
class ScoreRow:
    """One run's final evaluation on one game."""

    game: str
    method: str
    """the run's method label ("XTRA", "EfficientZero", "XTRA w/o task weights", ...)"""
    seed: int
    score: float
    """mean return of the final evaluation's episodes"""
    stage: str = ""
    env_steps: int = 0
    run_dir: str = ""


def method_key(name: str) -> str:
    """A method name compared loosely: lower case, letters and digits only
    ("efficientzero" matches "EfficientZero", "xtra-w-o-task-weights" matches "XTRA w/o task weights")."""
    return "".join(c for c in name.lower() if c.isalnum())


def find_method(rows: Iterable[ScoreRow], name: str, flag: str = "--baseline") -> str:
    """The method label of ``rows`` that ``name`` names (see :func:`method_key`); XtraError if none."""
    methods = sorted({r.method for r in rows})
    for m in methods:
        if method_key(m) == method_key(name):
            return m
    raise XtraError(
        f"{flag} {name}: no run has that method; the runs found have {', '.join(methods)}"
    )


def by_method_game(rows: Iterable[ScoreRow]) -> dict[str, dict[str, list[ScoreRow]]]:
    """{method: {game: rows sorted by seed}}."""
    out: dict[str, dict[str, list[ScoreRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[r.method][r.game].append(r)
    return {
        m: {g: sorted(rs, key=lambda r: r.seed) for g, rs in games.items()}
        for m, games in out.items()
    }


def ordered_methods(rows: Iterable[ScoreRow], baseline: str | None) -> list[str]:
    """The baseline first, then the paper's Table 1 and 2 columns in their order, then the rest
    alphabetically."""
    present = {r.method for r in rows}
    known = [m for m in METHODS if m in present and m != baseline]
    rest = sorted(present - set(known) - {baseline})
    return ([baseline] if baseline in present else []) + known + rest


def ordered_games(games: Iterable[str]) -> list[str]:
    """Table 1's games in its order (Shooter, then Maze), then Table 2's targets, then the
    other registered games in the registry's order, then the rest alphabetically."""
    games = set(games)
    first = SHOOTER + MAZE + DIVERSE_TARGETS
    known = [g for g in (*first, *GAMES) if g in games]
    known = list(dict.fromkeys(known))
    return known + sorted(games - set(known))


def normaliser(kind: str, rows: Sequence[ScoreRow], baseline: str | None = None):
    """{game: f} with f(score) the normalised score, for the games where ``kind`` is defined."""
    if kind not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {kind!r}")
    games = {r.game for r in rows}
    out = {}
    for name in games:
        if kind == "raw":
            out[name] = lambda s: s
            continue
        if kind == "baseline":
            base = [r.score for r in rows if r.method == baseline and r.game == name]
            mean = float(np.mean(base)) if base else 0.0
            if mean > 0:
                out[name] = lambda s, b=mean: s / b
            continue
        try:
            g = get_game(name)
        except XtraError:  # a game this installation does not know: no references
            continue
        top = g.human_score if kind == "human" else g.optimal_score
        if g.random_score is not None and top is not None and top != g.random_score:
            out[name] = lambda s, lo=g.random_score, hi=top: (s - lo) / (hi - lo)
    return out


def score_matrix(
    per_game: dict[str, list[ScoreRow]], games: Sequence[str], norm: dict
) -> tuple[np.ndarray, int]:
    """([R, G] normalised scores, runs dropped): R = the smallest number of seeds over ``games``;
    a game with more seeds keeps its R lowest (rliable's estimators take a full matrix)."""
    r = min(len(per_game[g]) for g in games)
    cols = [[norm[g](row.score) for row in per_game[g][:r]] for g in games]
    dropped = sum(len(per_game[g]) - r for g in games)
    return np.array(cols, dtype=np.float64).T.reshape(r, len(games)), dropped


def raw_matrix(per_game: dict[str, list[ScoreRow]], games: Sequence[str]) -> np.ndarray:
    """[R, G] raw scores (see :func:`score_matrix`)."""
    return score_matrix(per_game, games, dict.fromkeys(games, float))[0]


def mean_interval(
    values: Sequence[float], *, reps: int, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and its percentile-bootstrap interval (seeds
    resampled with replacement); the interval is (mean, mean) for one seed."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    means = v[rng.integers(len(v), size=(reps, len(v)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(lo), float(hi)
