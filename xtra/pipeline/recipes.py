"""Named pretraining recipes: the paper's game sets as YAML files in ``configs/`` (Table 5, 1, 2),
which is ``xtra/resources/recipes/`` in an installed package.

A recipe names the pretraining games, the target game, the preset and ``--set`` overrides::

    name: similar-assault
    about: XTRA Table 1, Shooter: pretrain on the other 4 Shooter games, finetune on Assault
    target: Assault
    pretrain: [Carnival, Centipede, DemonAttack, Phoenix]
    preset: paper
    set: [model.size=ez-l]

``xtra distill --recipe similar-assault --data-root DATA --teacher-root TEACHERS`` then reads
the dataset of each pretraining game from ``DATA/<game>`` and its teacher from
``TEACHERS/<game>`` (``<game>`` with ``/`` replaced by ``_``, e.g. ``minatar_breakout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from xtra.errors import XtraError
from xtra.games import get_game

# Shipped with the package; the repository's configs/ is a link to this directory.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "resources" / "recipes"


@dataclass(frozen=True)
class Recipe:
    name: str
    about: str
    target: str
    pretrain: tuple[str, ...]
    preset: str
    overrides: tuple[str, ...]


def game_dir(game: str) -> str:
    """Directory name of a game's dataset or teacher under a root (``minatar/x`` -> ``minatar_x``)."""
    return get_game(game).name.replace("/", "_")


def _available() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


RECIPES = tuple(_available())


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe by name (``configs/NAME.yaml``) or path; XtraError for an unknown one."""
    path = Path(name_or_path)
    if not path.is_file():
        path = _available().get(str(name_or_path), Path("/nonexistent"))
    if not path.is_file():
        raise XtraError(
            f"unknown recipe {str(name_or_path)!r}: choose one of {', '.join(_available())} or give a YAML file"
        )
    data = yaml.safe_load(path.read_text()) or {}
    try:
        return Recipe(
            name=str(data.get("name", path.stem)),
            about=str(data.get("about", "")),
            target=get_game(data["target"]).name,
            pretrain=tuple(get_game(g).name for g in data["pretrain"]),
            preset=str(data.get("preset", "paper")),
            overrides=tuple(str(s) for s in data.get("set", ())),
        )
    except KeyError as e:
        raise XtraError(f"recipe {path} has no {e.args[0]!r} field") from None
