"""Run directories: resolved config, atomic checkpoints, metrics, and the final model artefact.

Layout of a run directory (every stage writes one)::

    RUN/config.yaml           the resolved config (with each field's meaning)
    RUN/run.json              stage, game(s), xtra version, command line
    RUN/checkpoints/LATEST    name of the newest complete checkpoint directory
    RUN/checkpoints/step-N/   state.pt (+ replay/ for stages with a replay buffer)
    RUN/metrics.csv           one row per log interval (training step, env steps, losses, ...)
    RUN/eval.csv              long format: game, method, seed, step, env_steps, episode, score, length
    RUN/tb/                   TensorBoard scalars
    RUN/model.pt              the final weights and what is needed to rebuild the network
    RUN/final.json            written last: the final evaluation's summary per game, steps,
                              env steps, wall-clock seconds; its presence means "finished"

A checkpoint directory is written under a temporary name and renamed when complete, then LATEST is
replaced atomically, so a run killed at any moment resumes from the last complete checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xtra import __version__
from xtra.atomic import atomic_write, atomic_write_text
from xtra.compat import load_pickled
from xtra.config import Config, dump_yaml, from_dict, load_yaml, to_dict
from xtra.errors import CheckpointError

CHECKPOINTS = "checkpoints"
FINAL = "final.json"


def read_final(path: str | Path) -> dict[str, Any] | None:
    """The summary a finished run wrote (``RUN/final.json``), or None for an unfinished run.

    Keys: game (the first evaluation game), games, method, seed, steps, env_steps, wall_s,
    stopped_by_time, final (the first game's score summary), finals ({game: summary})."""
    final = Path(path) / FINAL
    if not final.exists():
        return None
    summary = json.loads(final.read_text())
    summary.setdefault("finals", {summary["game"]: summary["final"]})
    return summary


class RunDir:
    """A stage's directory; creating one for an existing run checks that the config matches."""

    def __init__(self, path: str | Path, cfg: Config, *, stage: str, info: dict[str, Any]):
        self.path = Path(path)
        self.cfg = cfg
        self.stage = stage
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.path / "config.yaml"
        if cfg_path.exists() and self.latest_checkpoint() is not None:
            previous = load_yaml(cfg_path)
            if _comparable(previous) != _comparable(cfg):
                diff = _first_difference(to_dict(previous), to_dict(cfg))
                raise CheckpointError(
                    f"{self.path} holds a run with a different config ({diff}): resume with the same "
                    "options, or choose a new --run-dir"
                )
            old = (
                json.loads((self.path / "run.json").read_text())
                if (self.path / "run.json").exists()
                else {}
            )
            for key, value in info.items():
                if key in old and old[key] != value:
                    raise CheckpointError(
                        f"{self.path} holds a {old.get('stage', '?')} run with {key}={old[key]!r}, not {value!r}: "
                        "choose a new --run-dir"
                    )
        atomic_write_text(cfg_path, dump_yaml(cfg))
        meta = {"stage": stage, **info, "xtra_version": __version__, "command": " ".join(sys.argv)}
        atomic_write_text(self.path / "run.json", json.dumps(meta, indent=2) + "\n")

    def write_final(self, summary: dict[str, Any]) -> None:
        """Mark the run finished with its summary (see :func:`read_final`)."""
        atomic_write_text(self.path / FINAL, json.dumps(summary, indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_root(self) -> Path:
        return self.path / CHECKPOINTS

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoint_root / "LATEST"
        if not pointer.exists():
            return None
        ckpt = self.checkpoint_root / pointer.read_text().strip()
        if not (ckpt / "state.pt").exists():
            raise CheckpointError(
                f"{pointer} names {ckpt.name}, which is incomplete: remove {pointer} to start over"
            )
        return ckpt

    def save_checkpoint(
        self, step: int, state: dict[str, Any], extra: Callable[[Path], None] | None = None
    ) -> Path:
        """Write ``state`` (torch-picklable) and whatever ``extra(dir)`` writes, then switch LATEST."""
        root = self.checkpoint_root
        root.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:09d}"
        tmp = root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(state, tmp / "state.pt")
        if extra is not None:
            extra(tmp)
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(root / "LATEST", name + "\n")
        for old in root.iterdir():
            if old.name not in (name, "LATEST"):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self) -> tuple[dict[str, Any], Path] | None:
        ckpt = self.latest_checkpoint()
        if ckpt is None:
            return None
        try:
            state = load_pickled(ckpt / "state.pt")
        except Exception as e:  # a corrupt file is a user-level problem, not a traceback
            raise CheckpointError(
                f"cannot read {ckpt / 'state.pt'} ({type(e).__name__}): remove {ckpt} to resume from scratch"
            ) from None
        return state, ckpt


def _comparable(cfg: Config) -> dict:
    d = to_dict(cfg)
    d.pop("device", None)  # resuming on another device is fine
    return d


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb:
            return f"{prefix}{key}: {va!r} there, {vb!r} now"
    return ""


# ---------------------------------------------------------------------- metrics


class MetricsWriter:
    """Wide CSV (one row per log step) plus TensorBoard scalars; resuming drops rows past the checkpoint."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard: bool = True):
        self.csv_path = path / "metrics.csv"
        self.fields: list[str] | None = None
        if self.csv_path.exists():
            rows, fields = _read_csv(self.csv_path)
            if resume_step is None:
                rows = []
            else:
                rows = [r for r in rows if int(float(r["step"])) <= resume_step]
            self.fields = fields if rows else None
            _write_csv(self.csv_path, fields, rows)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(path / "tb"), purge_step=resume_step)

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **values}
        if self.fields is None:
            self.fields = list(row)
            _write_csv(self.csv_path, self.fields, [])
        for key in row:
            if key not in self.fields:  # a new metric appears: rewrite the header once
                rows, _ = _read_csv(self.csv_path)
                self.fields.append(key)
                _write_csv(self.csv_path, self.fields, rows)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader), list(reader.fieldnames or [])


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


EVAL_FIELDS = [
    "game",
    "method",
    "seed",
    "step",
    "env_steps",
    "kind",
    "episode",
    "score",
    "length",
    "wall_s",
]


def append_eval_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Long-format evaluation rows (one per episode) in RUN/eval.csv."""
    csv_path = path / "eval.csv"
    if not csv_path.exists():
        _write_csv(csv_path, EVAL_FIELDS, [])
    with open(csv_path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=EVAL_FIELDS).writerows(rows)


def truncate_eval_rows(path: Path, resume_step: int | None) -> None:
    """On resume, drop evaluation rows written after the checkpoint (they will be written again)."""
    csv_path = path / "eval.csv"
    if not csv_path.exists():
        return
    rows, _ = _read_csv(csv_path)
    keep = [] if resume_step is None else [r for r in rows if int(r["step"]) <= resume_step]
    _write_csv(csv_path, EVAL_FIELDS, keep)


# ---------------------------------------------------------------------- model artefact


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    cfg: Config,
    *,
    games: list[str],
    obs_shape: tuple[int, int, int],
    stage: str,
    step: int,
) -> None:
    """The final weights plus everything needed to rebuild the network (``load_model``)."""
    payload = {
        "format": "xtra-model",
        "version": 1,
        "xtra_version": __version__,
        "stage": stage,
        "step": step,
        "games": list(games),
        "obs_shape": list(obs_shape),
        "config": to_dict(cfg),
        "model": model.state_dict(),
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """(model, config, payload) from a file written by :func:`save_model` or a run directory."""
    from xtra.model.networks import EfficientZeroNet

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise CheckpointError(f"no model at {path}: give a model.pt or a finished run directory")
    try:
        payload = load_pickled(path)
    except Exception as e:
        raise CheckpointError(
            f"cannot read {path} ({type(e).__name__}): is it an xtra model file?"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != "xtra-model":
        raise CheckpointError(
            f"{path} is not an xtra model file (written by `xtra train` and the other stages)"
        )
    if payload.get("version", 0) > 1:
        raise CheckpointError(
            f"{path} has model format version {payload['version']}: upgrade xtra to read it"
        )
    cfg = from_dict(payload["config"])
    model = EfficientZeroNet(cfg.model, tuple(payload["obs_shape"]))
    model.load_state_dict(payload["model"])
    return model.to(device), cfg, payload
