"""The game registry: one frozen :class:`Game` record per game, and the paper's game sets.

Sources:

* Categories and the similar/diverse game sets: XTRA paper (Xu, Hansen et al., ICLR 2023,
  arXiv:2210.10763) Table 5, Table 1, Table 2 and Section 4.1; spec B10.1.
* Legal actions: ale-py 0.12.1 ``getMinimalActionSet()`` (hard-coded here so the registry needs no
  ROMs; ``tests/test_games.py`` checks every row against ale-py and minatar 1.0.15).
* Random and human reference scores: ``resources/atari_reference_scores.csv``, the table of
  Badia et al. 2020 (Agent57), which XTRA Table 3 cites; human = the "average human" column of
  Wang et al. 2016, random = Mnih et al. 2015 / Wang et al. 2016. Carnival and Pooyan have no
  published values (``None``). VideoPinball's random score is 0.0 as printed by Agent57; Nature
  DQN and dqn_zoo print 16256.9 (see the CSV's notes and ``shared/data/README.md``).
* ``paper_scores``: XTRA Table 1 (similar pretraining), Table 2 (diverse pretraining; baselines
  adopted from EfficientZero), and EfficientZero's published Atari100k scores (Ye et al. 2021,
  Table 1) from ``resources/efficientzero_atari100k_scores.csv``. Per-seed XTRA scores: Table 3.
  All scores are raw game scores at 100k environment steps.
* Toy and family games (``xtra.envs.toy``, ``xtra.envs.families``): exact expected returns of
  the uniformly random and of the optimal policy (``random_score``, ``optimal_score``), computed
  by dynamic programming and checked against the environments in tests.

Besides the registered names, any Gymnasium environment is a game (:func:`get_game` builds its
record from the environment):

* ``module:factory`` -- a callable importable from ``sys.path`` (``PYTHONPATH``) or the current
  directory that returns a ``gymnasium.Env``; ``factory`` may be a dotted attribute path;
* ``gym:ID`` -- an id registered with Gymnasium (``gym:CartPole-v1``); ``gym:module:ID``
  imports ``module`` first (Gymnasium's own convention), and ``ALE/...`` ids import ale-py.

Such a game's legal actions are ``metadata["xtra_ale_ids"]`` when the env gives them (n distinct
ALE ids 0..17 for its ``Discrete(n)`` actions), else local action i -> ALE id i (ale-py's Atari
envs: their own action set); its random and optimal scores are ``metadata["xtra_random_score"]``
and ``metadata["xtra_optimal_score"]`` (None when absent).
"""

from __future__ import annotations

import csv
import difflib
import functools
import importlib
import io
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

from xtra.errors import GameError

SUITES = ("atari", "minatar", "toy", "family", "gym")
"""``family``: xtra's task families (``family/<variant>``); ``gym``: a Gymnasium env named by
``module:factory`` or ``gym:ID`` (never in :data:`GAMES`: built on demand by :func:`get_game`)."""
CATEGORIES = ("Maze", "Shooter", "Tank", "Adventure", "Ball Tracking", "Other")
"""Table 5's five categories, plus "Other" for games the paper does not categorise."""

# Method keys of ``Game.paper_scores``.
TABLE1_METHODS = (
    "EfficientZero",  # XTRA's own rerun, without EZ's extra 20k gradient steps (App. I)
    "EfficientZero-L",  # 4x larger representation network (App. H)
    "XTRA",  # main result, pretrained on the other 4 games of the category
    "XTRA w/o cross-task",  # ablation (i): finetune on the target task only
    "XTRA w/o pretraining",  # ablation (ii): random initialisation
    "XTRA w/o task weights",  # ablation (iii): constant task weights of 1
    "BC zero-shot",  # multi-task behaviour cloning on the pretraining data
    "XTRA zero-shot",  # the pretrained model, no finetuning
)
TABLE2_METHODS = (
    "XTRA (diverse)",  # pretrained on DIVERSE_PRETRAIN, with EZ's extra 20k gradient steps
    "SimPLe",
    "OTRainbow",
    "CURL",
    "DrQ",
    "SPR",
    "MuZero",
)
EFFICIENTZERO_PUBLISHED = "EfficientZero (published)"
"""Ye et al. 2021 Table 1, for all 26 Atari100k games (the CSV); XTRA Table 2's EZ column."""
METHODS = TABLE1_METHODS + TABLE2_METHODS + (EFFICIENTZERO_PUBLISHED,)


@dataclass(frozen=True)
class Game:
    """One game: its suite, Table 5 category, legal ALE action ids and reference scores."""

    name: str
    """"MsPacman" (ALE CamelCase name), "minatar/breakout", "toy/catch"."""
    suite: str
    """one of SUITES"""
    category: str
    """one of CATEGORIES (Table 5 for the paper's games)"""
    legal_actions: tuple[int, ...]
    """ALE action ids 0..17 of the minimal action set, in ale-py's (or MinAtar's) order"""
    random_score: float | None = None
    """uniform-random agent score (Atari: Agent57 table; toy and family games: exact expected
    return; gym games: ``metadata["xtra_random_score"]``); None where none is known"""
    human_score: float | None = None
    """average-human score (Agent57 table); None where none is published"""
    paper_scores: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )
    """method key (METHODS) -> reported score at 100k environment steps"""
    optimal_score: float | None = None
    """best expected return (toy and family games: exact; gym games:
    ``metadata["xtra_optimal_score"]``); None where none is known"""

    @property
    def ale_id(self) -> str:
        """The gymnasium id, ``ALE/<name>-v5``."""
        if self.suite != "atari":
            raise GameError(f"{self.name} is a {self.suite} game, not an Atari (ALE) game")
        return f"ALE/{self.name}-v5"

    @property
    def num_actions(self) -> int:
        """A, the size of the minimal action set."""
        return len(self.legal_actions)


# --- Game sets --------------------------------------------------------------------------------

# Atari100k: the 26 games of Kaiser et al. 2020 (SimPLe), used by EfficientZero (Ye et al. 2021).
ATARI100K = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero",
    "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert",
    "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip
# Similar-task sets: XTRA Table 1 and Table 5 ("Similar Task" column), in Table 1's row order.
SHOOTER = ("Assault", "Carnival", "Centipede", "DemonAttack", "Phoenix")
MAZE = ("Alien", "Amidar", "BankHeist", "MsPacman", "WizardOfWor")
# Diverse-task sets: XTRA Section 4.1, Table 2 and Table 5 ("Diverse Task" columns).
DIVERSE_PRETRAIN = (
    "Carnival", "Centipede", "Phoenix", "Pooyan", "Riverraid", "VideoPinball", "WizardOfWor",
    "YarsRevenge",
)  # fmt: skip
DIVERSE_TARGETS = ("Assault", "BattleZone", "Hero", "Krull", "Seaquest")
# MinAtar (Young & Tian 2019), the five games of minatar 1.0.15.
MINATAR = (
    "minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/seaquest",
    "minatar/space_invaders",
)  # fmt: skip
# Toy games with a known optimum (xtra.envs).
TOY = ("toy/catch", "toy/chain")
# Task families with known relations (xtra.envs.families); the target first.
FAMILY = (
    "family/catch", "family/catch-colors", "family/catch-texture", "family/catch-wide",
    "family/catch-fast", "family/catch-drift", "family/catch-avoid", "family/courier",
)  # fmt: skip

# --- Paper scores -----------------------------------------------------------------------------

# XTRA Table 1 (similar pretraining tasks; mean of 5 seeds x 32 episodes), columns as
# TABLE1_METHODS. BC zero-shot Carnival is printed with two decimals (93.75).
_TABLE1 = {
    "Assault": (1027.1, 1041.6, 1294.6, 1246.4, 1257.5, 1164.2, 0.0, 92.8),
    "Carnival": (3022.1, 2784.3, 3860.9, 3544.4, 2370.0, 3071.6, 93.75, 719.3),
    "Centipede": (3322.7, 2750.7, 5681.4, 3833.2, 6322.7, 5484.1, 162.2, 1206.8),
    "DemonAttack": (11523.0, 4691.0, 14140.9, 6381.5, 9486.8, 51045.9, 73.8, 113.6),
    "Phoenix": (10954.9, 3071.0, 14579.8, 10797.3, 9010.6, 22873.9, 0.0, 8073.4),
    "Alien": (695.0, 641.5, 954.8, 722.8, 703.6, 633.6, 108.1, 294.1),
    "Amidar": (109.7, 84.2, 90.2, 121.8, 70.8, 69.7, 0.0, 5.2),
    "BankHeist": (246.1, 244.5, 304.9, 280.1, 225.1, 261.4, 0.0, 7.3),
    "MsPacman": (1281.4, 1172.8, 1459.7, 1011.1, 1122.6, 809.2, 147.6, 448.9),
    "WizardOfWor": (1033.1, 928.8, 985.0, 1246.1, 654.4, 263.5, 100.0, 9.4),
}

# XTRA Table 2 (diverse pretraining tasks), columns as TABLE2_METHODS. The EfficientZero,
# Random and Human columns are not restated: they equal the packaged CSVs (checked in tests).
_TABLE2 = {
    "Assault": (1742.2, 527.2, 351.9, 600.6, 452.4, 571.0, 500.1),
    "BattleZone": (14631.25, 5184.4, 4060.6, 14870.0, 12954.0, 16651.0, 7687.5),
    "Hero": (10631.8, 2656.6, 6458.8, 6279.3, 3736.3, 7019.2, 3095.0),
    "Krull": (7735.8, 4539.9, 3277.9, 4229.6, 4018.1, 3688.9, 4890.8),
    "Seaquest": (749.5, 683.3, 286.9, 384.5, 301.2, 583.1, 208.0),
}

XTRA_SEED_SCORES: Mapping[str, tuple[float, float, float, float, float]] = MappingProxyType(
    {
        # XTRA Table 3 (App. E): XTRA's score per seed (seeds 0..4), 32 episodes each at 100k
        # steps; the means are Table 1's XTRA column.
        "Assault": (1450.19, 1356.53, 1236.19, 1215.12, 1214.72),
        "Carnival": (3865.31, 4867.50, 4155.62, 2601.88, 3814.38),
        "Centipede": (7596.38, 6179.25, 5380.41, 5300.03, 3950.88),
        "DemonAttack": (10470.78, 8051.25, 27574.06, 8117.81, 16490.47),
        "Phoenix": (20875.94, 10988.44, 10521.88, 15803.44, 14709.06),
        "Alien": (569.69, 807.50, 814.06, 1388.12, 1194.38),
        "Amidar": (93.00, 104.34, 76.47, 97.38, 79.59),
        "BankHeist": (303.12, 316.56, 270.62, 270.00, 364.06),
        "MsPacman": (1109.69, 1960.00, 1865.94, 1228.44, 1134.38),
        "WizardOfWor": (1275.00, 687.50, 1056.25, 990.62, 915.62),
    }
)

# --- The registry -----------------------------------------------------------------------------

_ALL = tuple(range(18))  # the full ALE action set

# Atari: (name, category, legal ALE ids from ale-py 0.12.1 getMinimalActionSet()).
# Categories of the 18 games in Table 5 are the paper's; the others are our best fit, marked
# "(ours)". Table 5's action-space sizes all equal ale-py's minimal sets (tested).
_ATARI = (
    ("Alien", "Maze", _ALL),
    ("Amidar", "Maze", (0, 1, 2, 3, 4, 5, 10, 11, 12, 13)),
    ("Assault", "Shooter", (0, 1, 2, 3, 4, 11, 12)),
    ("Asterix", "Other", (0, 2, 3, 4, 5, 6, 7, 8, 9)),  # (ours) collect and dodge
    ("BankHeist", "Maze", _ALL),
    ("BattleZone", "Tank", _ALL),
    ("Boxing", "Other", _ALL),  # (ours) fighting
    ("Breakout", "Ball Tracking", (0, 1, 3, 4)),  # (ours)
    ("Carnival", "Shooter", (0, 1, 3, 4, 11, 12)),
    ("Centipede", "Shooter", _ALL),
    ("ChopperCommand", "Shooter", _ALL),  # (ours)
    ("CrazyClimber", "Other", (0, 2, 3, 4, 5, 6, 7, 8, 9)),  # (ours) climbing
    ("DemonAttack", "Shooter", (0, 1, 3, 4, 11, 12)),
    ("Freeway", "Other", (0, 2, 5)),  # (ours) road crossing
    ("Frostbite", "Other", _ALL),  # (ours) platform hopping
    ("Gopher", "Other", (0, 1, 2, 3, 4, 10, 11, 12)),  # (ours) defend the crop
    ("Hero", "Adventure", _ALL),
    ("Jamesbond", "Shooter", _ALL),  # (ours) side-scrolling shooter
    ("Kangaroo", "Adventure", _ALL),  # (ours) platformer, like Hero
    ("Krull", "Adventure", _ALL),
    ("KungFuMaster", "Other", (0, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17)),  # (ours) fighting
    ("MsPacman", "Maze", (0, 2, 3, 4, 5, 6, 7, 8, 9)),
    ("Phoenix", "Shooter", (0, 1, 3, 4, 5, 11, 12, 13)),
    ("Pong", "Ball Tracking", (0, 1, 3, 4, 11, 12)),  # (ours)
    ("Pooyan", "Shooter", (0, 1, 2, 5, 10, 13)),
    ("PrivateEye", "Adventure", _ALL),  # (ours) exploration
    ("Qbert", "Other", (0, 1, 2, 3, 4, 5)),  # (ours) puzzle platformer
    ("Riverraid", "Shooter", _ALL),
    ("RoadRunner", "Other", _ALL),  # (ours) chase
    ("Seaquest", "Shooter", _ALL),
    ("UpNDown", "Other", (0, 1, 2, 5, 10, 13)),  # (ours) driving
    ("VideoPinball", "Ball Tracking", (0, 1, 2, 3, 4, 5, 10, 11, 12)),
    ("WizardOfWor", "Maze", (0, 1, 2, 3, 4, 5, 10, 11, 12, 13)),
    ("YarsRevenge", "Shooter", _ALL),
)

# MinAtar: minimal_action_set() order, mapped from MinAtar's letters to ALE ids
# (n:0 NOOP, f:1 FIRE, u:2 UP, r:3 RIGHT, l:4 LEFT, d:5 DOWN). Categories are ours.
_MINATAR = (
    ("minatar/asterix", "Other", (0, 4, 2, 3, 5)),  # n l u r d
    ("minatar/breakout", "Ball Tracking", (0, 4, 3)),  # n l r
    ("minatar/freeway", "Other", (0, 2, 5)),  # n u d
    ("minatar/seaquest", "Shooter", (0, 4, 2, 3, 5, 1)),  # n l u r d f
    ("minatar/space_invaders", "Shooter", (0, 4, 3, 1)),  # n l r f
)

# Toy games: the action orders are a contract with xtra.envs. Categories are ours.
# (name, category, legal ALE ids, random return, optimal return), both returns exact.
_TOY = (
    ("toy/catch", "Ball Tracking", (0, 3, 4), -0.6, 1.0),  # NOOP, RIGHT, LEFT
    ("toy/chain", "Other", (3, 4), 237063 / 524288, 1.0),  # RIGHT, LEFT
)
# Family games (xtra.envs.families, its module docstring): NOOP, RIGHT, LEFT for every variant;
# random and optimal returns exact (dynamic programming, tests/test_families.py recomputes them).
_FAMILY_ACTIONS = (0, 3, 4)
_FAMILY = (
    ("family/catch", "Ball Tracking", _FAMILY_ACTIONS, -4.0, 5.0),
    ("family/catch-colors", "Ball Tracking", _FAMILY_ACTIONS, -4.0, 5.0),
    ("family/catch-texture", "Ball Tracking", _FAMILY_ACTIONS, -4.0, 5.0),
    ("family/catch-wide", "Ball Tracking", _FAMILY_ACTIONS, -2.0, 5.0),
    ("family/catch-fast", "Ball Tracking", _FAMILY_ACTIONS, -4.0, 3.70184),
    ("family/catch-drift", "Ball Tracking", _FAMILY_ACTIONS, -4.0, 5.0),
    ("family/catch-avoid", "Ball Tracking", _FAMILY_ACTIONS, 4.0, 5.0),
    ("family/courier", "Other", _FAMILY_ACTIONS, 0.29458636862000265, 3.732309919124876),
)


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("xtra.resources").joinpath(filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _opt_float(cell: str) -> float | None:
    return float(cell) if cell.strip() else None


def _build() -> dict[str, Game]:
    refs = {r["game"]: r for r in _read_csv("atari_reference_scores.csv")}
    ez = {r["game"]: float(r["score"]) for r in _read_csv("efficientzero_atari100k_scores.csv")}
    games: dict[str, Game] = {}
    for name, category, legal in _ATARI:
        scores: dict[str, float] = {}
        for methods, table in ((TABLE1_METHODS, _TABLE1), (TABLE2_METHODS, _TABLE2)):
            if name in table:
                scores.update(zip(methods, table[name], strict=True))
        if name in ez:
            scores[EFFICIENTZERO_PUBLISHED] = ez[name]
        games[name] = Game(
            name=name,
            suite="atari",
            category=category,
            legal_actions=legal,
            random_score=_opt_float(refs[name]["random"]),
            human_score=_opt_float(refs[name]["human"]),
            paper_scores=MappingProxyType(scores),
        )
    for name, category, legal in _MINATAR:
        games[name] = Game(name=name, suite="minatar", category=category, legal_actions=legal)
    for suite, rows in (("toy", _TOY), ("family", _FAMILY)):
        for name, category, legal, random_score, optimal_score in rows:
            games[name] = Game(
                name=name,
                suite=suite,
                category=category,
                legal_actions=legal,
                random_score=random_score,
                optimal_score=optimal_score,
            )
    return games


GAMES: Mapping[str, Game] = MappingProxyType(_build())
_BY_LOWER = {name.lower(): name for name in GAMES}


def get_game(name: str | Game) -> Game:
    """The registered game called ``name`` (case-insensitive), or the record of the Gymnasium
    env named ``module:factory`` / ``gym:ID`` (built once from the env); GameError if none."""
    if isinstance(name, Game):
        return name
    if is_gym_name(name):
        return _gym_game(gym_name(name))
    key = _BY_LOWER.get(name.strip().lower())
    if key is not None:
        return GAMES[key]
    close = difflib.get_close_matches(name.strip().lower(), _BY_LOWER, n=3, cutoff=0.6)
    hint = f": did you mean {' or '.join(_BY_LOWER[c] for c in close)}?" if close else ""
    raise GameError(f"unknown game {name!r}{hint} (`xtra games` lists all)")


def similar_pretraining_games(target: str | Game) -> tuple[str, ...]:
    """The 4 other games of the target's Table 1 category (its similar-task pretraining set)."""
    name = get_game(target).name
    for group in (SHOOTER, MAZE):
        if name in group:
            return tuple(g for g in group if g != name)
    raise GameError(
        f"{name} has no similar-task pretraining set: Table 1 covers {', '.join(SHOOTER + MAZE)}"
    )


def human_normalized(game: str | Game, score: float) -> float:
    """Human-normalised score (score - random) / (human - random) (XTRA App. E)."""
    g = get_game(game)
    if g.random_score is None or g.human_score is None:
        raise GameError(f"{g.name} has no published random/human reference score to normalise by")
    return (score - g.random_score) / (g.human_score - g.random_score)


# --- Gymnasium environments as games ----------------------------------------------------------

GYM_PREFIX = "gym:"
"""``gym:ID`` names a registered Gymnasium id; any other name with a colon is ``module:factory``."""
MAX_ACTIONS = 18
"""A Gymnasium game has Discrete(n) actions with n <= 18: one per ALE id of the policy head."""


def is_gym_name(name: str) -> bool:
    """True for ``module:factory`` and ``gym:ID`` names (the names with a colon)."""
    return ":" in name


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _import(module: str, game: str):
    """Import ``module`` from sys.path, else from the current directory (as ``python -m`` does)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        cwd = os.getcwd()
        if missing and (module == missing or module.startswith(missing + ".")):
            if cwd not in sys.path and "" not in sys.path:
                sys.path.append(cwd)
                importlib.invalidate_caches()
                try:
                    return importlib.import_module(module)
                except ModuleNotFoundError:
                    pass
            raise GameError(
                f"cannot import module {module!r} of game {game!r}: put its directory on "
                "PYTHONPATH (or run from it) and check the spelling"
            ) from e
        raise GameError(f"importing {module!r} for game {game!r} failed: {_one_line(e)}") from e
    except Exception as e:  # the user's module raised while importing
        raise GameError(f"importing {module!r} for game {game!r} failed: {_one_line(e)}") from e


def _factory(module: str, attr: str, game: str):
    obj = _import(module, game)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GameError(
                f"module {module!r} has no {attr!r} (game {game!r}): name a callable in it that "
                "returns a gymnasium.Env"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise GameError(
            f"{module}:{attr} is a {type(obj).__name__}, not a callable (game {game!r}): name a "
            "function or class that returns a gymnasium.Env"
        )
    return obj


def _gym_id(env_id: str) -> str:
    """The registered id of ``env_id`` (``module:ID`` imports module first); GameError if none."""
    import gymnasium

    module, sep, bare = env_id.partition(":")
    if not sep:
        module, bare = "", env_id
    if module:
        _import(module, GYM_PREFIX + env_id)
    if bare not in gymnasium.registry and bare.startswith("ALE/"):
        try:
            import ale_py

            gymnasium.register_envs(ale_py)
        except ImportError:
            pass
    if bare not in gymnasium.registry:
        close = difflib.get_close_matches(bare, list(gymnasium.registry), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise GameError(
            f"{bare!r} is not a registered Gymnasium id{hint}: register it, or write "
            f"gym:MODULE:{bare} so that importing MODULE registers it"
        )
    return bare


def gym_name(name: str) -> str:
    """The canonical form of a ``gym:ID`` or ``module:factory`` name (surrounding spaces dropped,
    ``gym:`` in lower case), checked: the module imports and has the callable, the id is
    registered. GameError (one line) otherwise."""
    name = name.strip()
    head, _, rest = name.partition(":")
    head, rest = head.strip(), rest.strip()
    if head.lower() == GYM_PREFIX[:-1]:
        if not rest:
            raise GameError(
                f"game {name!r}: write gym:ID with a registered id, e.g. gym:CartPole-v1"
            )
        _gym_id(rest)
        return GYM_PREFIX + rest
    if not head or not rest or ":" in rest:
        raise GameError(
            f"game {name!r}: write module:factory (e.g. my_envs:make_catch, a callable returning "
            "a gymnasium.Env) or gym:ID (a registered Gymnasium id)"
        )
    _factory(head, rest, name)
    return f"{head}:{rest}"


def open_gym_env(name: str):
    """A new ``gymnasium.Env`` of the game ``name`` (``module:factory`` or ``gym:ID``): the
    factory called without arguments, or ``gymnasium.make(ID)``. GameError when it cannot be
    built or is not a ``gymnasium.Env``."""
    import gymnasium

    canonical = gym_name(name)
    head, _, rest = canonical.partition(":")
    if canonical.startswith(GYM_PREFIX):
        bare = _gym_id(rest)
        try:
            env = gymnasium.make(bare)
        except Exception as e:
            raise GameError(
                f"gymnasium.make({bare!r}) failed for game {canonical!r}: {_one_line(e)}"
            ) from e
    else:
        fn = _factory(head, rest, canonical)
        try:
            env = fn()
        except GameError:
            raise
        except Exception as e:
            raise GameError(f"the factory of game {canonical!r} raised {_one_line(e)}") from e
    if not isinstance(env, gymnasium.Env):
        raise GameError(
            f"{canonical} returned a {type(env).__name__}, not a gymnasium.Env: return one "
            "environment (a gymnasium.Env subclass; vector envs are not supported)"
        )
    return env


def _ale_action_set(env, n: int) -> tuple[int, ...] | None:
    """ale-py's Atari envs: the ALE ids of their Discrete actions."""
    u = env.unwrapped
    if not type(u).__module__.startswith("ale_py"):
        return None
    acts = getattr(u, "_action_set", None)
    if acts is None or len(acts) != n:
        return None
    return tuple(int(getattr(a, "value", a)) for a in acts)


def gym_action_ids(env, game: str) -> tuple[int, ...]:
    """The ALE id of each local action of a Gymnasium env: ``metadata["xtra_ale_ids"]``, else
    ale-py's action set for its Atari envs, else local action i -> ALE id i. GameError unless
    the action space is ``Discrete(n)``, n <= 18, and the ids are n distinct ids 0..17."""
    import gymnasium

    space = env.action_space
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise GameError(
            f"{game} has actions {space}: xtra supports Discrete(n) actions with n <= "
            f"{MAX_ACTIONS} only (not Box, MultiDiscrete, MultiBinary, Tuple or Dict)"
        )
    n = int(space.n)
    if not 1 <= n <= MAX_ACTIONS:
        raise GameError(
            f"{game} has Discrete({n}) actions: xtra's policy head has {MAX_ACTIONS} outputs, so "
            f"a game may have at most {MAX_ACTIONS} actions"
        )
    meta = getattr(env, "metadata", None) or {}
    ids = meta.get("xtra_ale_ids")
    if ids is None:
        ale = _ale_action_set(env, n)
        return ale if ale is not None else tuple(range(n))
    try:
        out = tuple(_as_int(a) for a in ids)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or len(set(out)) != n or not all(0 <= a < MAX_ACTIONS for a in out):
        raise GameError(
            f"{game}: metadata['xtra_ale_ids'] = {ids!r} must list {n} distinct ALE ids 0..17, "
            f"one per action of its Discrete({n})"
        )
    return out


def _as_int(x) -> int:
    if isinstance(x, bool) or isinstance(x, float):
        raise TypeError(x)
    return int(x.__index__())


def gym_score(env, key: str, game: str) -> float | None:
    """``metadata[key]`` as a finite float, None when absent; GameError when malformed."""
    meta = getattr(env, "metadata", None) or {}
    value = meta.get(key)
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise GameError(f"{game}: metadata[{key!r}] = {value!r} must be a finite number")
    return out


@functools.cache
def _gym_game(canonical: str) -> Game:
    env = open_gym_env(canonical)
    try:
        return Game(
            name=canonical,
            suite="gym",
            category="Other",
            legal_actions=gym_action_ids(env, canonical),
            random_score=gym_score(env, "xtra_random_score", canonical),
            optimal_score=gym_score(env, "xtra_optimal_score", canonical),
        )
    finally:
        env.close()
