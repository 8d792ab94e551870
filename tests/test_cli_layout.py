"""The CLI is one package, ``xtra/cli/``: every module imports, every subcommand has --help, no
library module imports it, and ``python -m xtra`` / ``python -m xtra.cli`` both run it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import xtra
import xtra.cli
from xtra.cli import build_parser, main

ROOT = Path(xtra.__file__).resolve().parent
CLI_MODULES = sorted(f"xtra.cli.{m.name}" for m in pkgutil.iter_modules(xtra.cli.__path__))


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommands(sub, (*prefix, name))


COMMANDS = sorted(set(_subcommands(build_parser())))


@pytest.mark.parametrize("module", [m for m in CLI_MODULES if not m.endswith("__main__")])
def test_every_cli_module_imports(module):
    importlib.import_module(module)


def test_the_cli_modules_are_the_command_groups():
    assert {m.rsplit(".", 1)[1] for m in CLI_MODULES} >= {
        "__main__", "common", "data", "finetune", "games", "pipeline", "pretrain", "train",
    }  # fmt: skip


@pytest.mark.parametrize("cmd", [(), *COMMANDS], ids=lambda c: " ".join(c) or "xtra")
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: xtra" in capsys.readouterr().out


def test_every_command_of_before_the_cli_package_is_there():
    for cmd in [("games",), ("env", "check"), ("config", "show"), ("config", "fields"),
                ("train",), ("demo",), ("data", "collect"), ("data", "from-run"),
                ("data", "validate"), ("data", "info"), ("data", "import-minari"),
                ("data", "export-minari"), ("data", "import-xtra"), ("teacher",), ("distill",),
                ("evaluate",), ("finetune",)]:  # fmt: skip
        assert cmd in COMMANDS, cmd


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_library_module_imports_the_cli():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        if any(n == "xtra.cli" or n.startswith("xtra.cli.") for n in _imports(path)):
            offenders.append(str(rel))
    assert not offenders, offenders
    assert not (ROOT / "cli.py").exists()
    assert not list(ROOT.rglob("cli_*.py"))


@pytest.mark.parametrize("module", ["xtra", "xtra.cli"])
def test_python_dash_m_runs_the_cli(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.startswith("xtra "), out.stderr
