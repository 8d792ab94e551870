"""What every ``xtra`` command shares: the parser, the config flags, argument checks, the output.

Config flags (every command that takes a configuration)::

    --preset paper|cpu|tiny      the starting hyper-parameters
    --config FILE.yaml           a full or partial config, applied on top of the preset
    --set SECTION.FIELD=VALUE    one field (repeatable), applied after the file
    --device DEVICE              the same as --set device=DEVICE, applied last

``xtra evaluate`` starts from the evaluated model's saved config instead of a preset (see
:mod:`xtra.cli.pretrain`). Every argument is checked here, before a command writes anything, so
that a bad value never leaves a half-made artefact behind.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from xtra.config import PRESETS, Config, make_config
from xtra.errors import ConfigError, XtraError

EXIT_USAGE = 2


# --------------------------------------------------------------------------- the parser


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, ``error: ...``, and exit code 2,
    like every other bad input (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see `{self.prog} --help`)")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (one line) and exit with code 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def one_line(message: str) -> str:
    return " ".join(str(message).split())


# --------------------------------------------------------------------------- argument types


def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """A count that must be at least 1 (zero is never "the default")."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a whole number >= 1")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a finite number > 0")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(float, text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a finite number >= 0")
    return value


# --------------------------------------------------------------------------- config flags


def add_budget_arg(p: argparse.ArgumentParser) -> None:
    """``--max-minutes M``: a wall-clock budget for a training stage."""
    p.add_argument(
        "--max-minutes",
        type=positive_float,
        metavar="M",
        help="stop training after M minutes of wall clock (counted across resumptions), then "
        "run the final evaluation and write model.pt; the run stays resumable",
    )


def max_seconds(args: argparse.Namespace) -> float | None:
    """``--max-minutes`` in seconds (None: no budget)."""
    return None if args.max_minutes is None else 60.0 * args.max_minutes


def add_config_args(p: argparse.ArgumentParser, default_preset: str | None = "paper") -> None:
    """``--preset``, ``--config``, ``--set`` and ``--device`` (module docstring)."""
    default = f"default {default_preset}" if default_preset else "default: the recipe's, else paper"
    p.add_argument(
        "--preset",
        default=default_preset,
        help=f"starting hyper-parameters: {', '.join(PRESETS)} ({default})",
    )
    add_override_args(p, "the preset")


def add_override_args(
    p: argparse.ArgumentParser, base: str, device_default: str = "the config's device field"
) -> None:
    """``--config``, ``--set`` and ``--device``, applied in that order on top of ``base``."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"a YAML file of fields (full or partial config) applied on top of {base}",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="change one field after --config, e.g. --set search.num_simulations=16 (repeatable)",
    )
    p.add_argument(
        "--device",
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N: the same as --set device=DEVICE, applied last "
        f"(default: {device_default})",
    )


def override_list(args: argparse.Namespace, before: Sequence[str] = ()) -> list[str]:
    """``before`` (e.g. a recipe's ``set:``), then ``--set``, then ``--device``, as ``--set`` items."""
    items = [*before, *args.overrides]
    if getattr(args, "device", None) is not None:
        items.append(f"device={args.device}")
    return items


def config_from(
    args: argparse.Namespace,
    *,
    preset: str | None = None,
    before: Sequence[str] = (),
    check_device: bool = True,
) -> Config:
    """The config of a command: ``--preset`` (or ``preset`` when the flag was not given), then
    ``--config``, then ``before`` and ``--set``, then ``--device``. ``check_device``: for
    commands that run a network, check the device here, so that a CUDA request on a CPU-only
    PyTorch stops before anything is written."""
    from xtra.device import resolve_device

    check_config_file(args.config)
    cfg = make_config(args.preset or preset or "paper", args.config, override_list(args, before))
    if check_device:
        resolve_device(cfg.device)
    return cfg


def check_config_file(path: str | None, flag: str = "--config") -> None:
    """A readable UTF-8 file, or a one-line ConfigError saying what is wrong with it."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a directory: give a YAML file")
    if not p.exists():
        raise ConfigError(f"{flag} {path} does not exist: check the path")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path} is not UTF-8 text: give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be read ({reason(e)}): {fix(e)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # the config loader names the line and column
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"{flag} {path} holds a {type(data).__name__}, not a config: write sections of "
            "fields, e.g. 'search: {num_simulations: 16}'"
        )


# --------------------------------------------------------------------------- paths


def check_output_dir(path: str | Path, flag: str) -> Path:
    """A directory a command may create or write into (existing or not), checked before anything
    is written: not a file, not under a file, writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise XtraError(f"{flag} {path} is a file, not a directory: choose another path")
    _check_creatable(p, flag, path)
    return p


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file a command will write (atomically replacing it if it exists): not a directory, its
    directory creatable and writable."""
    p = Path(path)
    if p.is_dir():
        raise XtraError(f"{flag} {path} is a directory: give a file name")
    _check_creatable(p.parent if str(p.parent) else Path("."), flag, path)
    return p


def _check_creatable(p: Path, flag: str, shown: str | Path) -> None:
    """``p`` exists as a writable directory or can be made: its nearest existing ancestor is a
    writable directory."""
    probe = p.absolute()
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail on it
            raise XtraError(f"{flag} {shown}: {probe} is a broken link: choose another path")
        probe = probe.parent
    if not probe.is_dir():
        raise XtraError(f"{flag} {shown} lies under {probe}, which is a file: choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise XtraError(
            f"{flag} {shown}: {probe} is not writable (permission denied): "
            "choose another path or fix its permissions"
        )


def check_input_dir(path: str | Path, flag: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise XtraError(f"{flag} {path} does not exist: give {what}")
    if not p.is_dir():
        raise XtraError(f"{flag} {path} is a file: give {what}")
    return p


# --------------------------------------------------------------------------- errors


def reason(e: OSError) -> str:
    """What an OSError says, without its path (``permission denied``)."""
    text = e.strerror or type(e).__name__
    return text[:1].lower() + text[1:]


_FIXES = {
    errno.EACCES: "fix its permissions or choose another path",
    errno.EPERM: "fix its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "free some disk space, then run the same command again",
    errno.EDQUOT: "free some disk space, then run the same command again",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory: give a file",
    errno.EEXIST: "it is in the way: choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def fix(e: OSError) -> str:
    return _FIXES.get(e.errno, "check the path and run the same command again")


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong, what to do."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    prefix = f"{where}: " if where else ""
    return f"{prefix}{reason(e)}: {fix(e)}"


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; bad input of any kind a user can fix is one line and exit code 2.

    Handled: :class:`XtraError` (its message), ``OSError`` (the path, the reason, the fix).
    Anything else is a bug and keeps its traceback."""
    try:
        return int(func(args) or 0)
    except XtraError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
    except OSError as e:
        print(f"error: {one_line(describe_os_error(e))}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command again to resume where the last checkpoint left it",
            file=sys.stderr,
        )
        return 130
    return EXIT_USAGE


# --------------------------------------------------------------------------- output


def print_finals(result) -> None:
    """The final evaluation of each game of a finished stage, then its run directory."""
    for game, f in (result.finals or {}).items():
        print(
            f"final evaluation on {game}: {f.mean:.2f} +- {f.std:.2f} over {len(f.scores)} episodes"
        )
    print(f"run directory: {result.run_dir}")


def slug(game: str) -> str:
    """A game's name in a directory name (``minatar/breakout`` -> ``minatar_breakout``)."""
    return game.replace("/", "_")


# --------------------------------------------------------------------------- recipes


def fill_from_root(
    recipe_name: str,
    games: Sequence[str],
    given: dict[str, str],
    root: str | None,
    *,
    root_flag: str,
    map_flag: str,
    what: str = "",
) -> dict[str, str]:
    """``given`` plus ``ROOT/<game>`` for each recipe game it lacks (``--data-root`` and the
    like); a one-line XtraError naming both flags when a game has neither."""
    from xtra.pipeline.recipes import game_dir

    out = dict(given)
    for game in games:
        if game in out:
            continue
        if not root:
            raise XtraError(
                f"recipe {recipe_name} needs {what}{game}: give {root_flag} or {map_flag}"
            )
        out[game] = str(Path(root) / game_dir(game))
    return out
