"""Run directories: resolved config, atomic checkpoints, metrics, and the final model artefact.

Layout of a run directory (every stage writes one)::

    RUN/config.yaml           the resolved config (with each field's meaning)
    RUN/run.json              stage, game(s), xtra version, command line
    RUN/checkpoints/LATEST    name of the newest complete checkpoint directory
    RUN/checkpoints/step-N/   state.pt (+ replay/ for stages with a replay buffer), and
                              checksums.json: the SHA-256 of every other file in step-N/
    RUN/metrics.csv           one row per log interval (training step, env steps, losses, ...)
    RUN/eval.csv              long format: game, method, seed, step, env_steps, episode, score, length
    RUN/tb/                   TensorBoard scalars
    RUN/model.pt              the final weights and what is needed to rebuild the network, with
                              the SHA-256 of that content
    RUN/final.json            written last: the final evaluation's summary per game, steps,
                              env steps, wall-clock seconds; its presence means "finished"

A checkpoint directory is written under a temporary name and renamed when complete, then LATEST is
replaced atomically, so a run killed at any moment resumes from the last complete checkpoint. Only
the newest checkpoint is kept. Every file of a checkpoint is listed with its SHA-256 in its
``checksums.json`` (written inside the directory before the rename); ``model.pt`` carries the
SHA-256 of its own content. Both are verified on load, and a mismatch is a one-line
:class:`CheckpointError` naming the file and what to do (``docs/files.md``). Files written before
checksums existed load without a check.
"""

from __future__ import annotations

import csv
import hashlib
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
from xtra.atomic import atomic_write, atomic_write_text, sha256_file
from xtra.compat import load_pickled
from xtra.config import Config, dump_yaml, from_dict, load_yaml, to_dict
from xtra.errors import CheckpointError

CHECKPOINTS = "checkpoints"
CHECKSUMS = "checksums.json"
FINAL = "final.json"
RUN_INFO = "run.json"


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0][:160] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _unreadable(path: Path, e: OSError) -> CheckpointError:
    """An existing file we may not read: a permission problem, never a reason to delete it."""
    reason = e.strerror or type(e).__name__
    return CheckpointError(
        f"cannot read {path} ({reason[:1].lower()}{reason[1:]}): fix its permissions "
        "(or the disk) and run the same command again"
    )


def _read_json(path: Path, damaged_fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _unreadable(path, e) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path} is damaged ({_short(e)}): {damaged_fix}") from None


def read_final(path: str | Path) -> dict[str, Any] | None:
    """The summary a finished run wrote (``RUN/final.json``), or None for an unfinished run.

    Keys: game (the first evaluation game), games, method, seed, steps, env_steps, wall_s,
    stopped_by_time, final (the first game's score summary), finals ({game: summary})."""
    final = Path(path) / FINAL
    if not final.exists():
        return None
    fix = (
        "remove it and run the same command again: the run evaluates its last checkpoint "
        "again and rewrites it"
    )
    summary = _read_json(final, fix)
    if not isinstance(summary, dict) or "game" not in summary or "final" not in summary:
        raise CheckpointError(f"{final} is not a run's summary: {fix}")
    summary.setdefault("finals", {summary["game"]: summary["final"]})
    return summary


def read_run_info(path: str | Path) -> dict[str, Any]:
    """``RUN/run.json`` (stage, game(s), method, ...), or {} when the run has none."""
    f = Path(path) / RUN_INFO
    if not f.exists():
        return {}
    info = _read_json(f, "restore it, or remove it (the run's options are then not checked)")
    if not isinstance(info, dict):
        raise CheckpointError(f"{f} is not a run description: restore it or remove it")
    return info


def read_run_config(path: str | Path) -> Config | None:
    """``RUN/config.yaml``, or None when the run has none."""
    f = Path(path) / "config.yaml"
    if not f.exists():
        return None
    try:
        return load_yaml(f)
    except OSError as e:
        raise _unreadable(f, e) from None
    except UnicodeDecodeError as e:
        raise CheckpointError(
            f"{f} is damaged ({_short(e)}): restore it, or remove it (the options of a resumed "
            "run are then not compared with the run's)"
        ) from None


# ---------------------------------------------------------------------- checkpoint files


def _restart_fix(root: Path) -> str:
    return (
        "only the newest checkpoint is kept, so restore the file from a backup, "
        f"or remove {root} to start the run over"
    )


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint of a training step (``step-000001000``)."""
    return f"step-{step:09d}"


def latest_checkpoint(run: str | Path) -> Path | None:
    """The directory ``RUN/checkpoints/LATEST`` names, or None when the run has no checkpoint."""
    root = Path(run) / CHECKPOINTS
    pointer = root / "LATEST"
    if not pointer.exists():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise _unreadable(pointer, e) from None
    except UnicodeDecodeError:
        name = ""
    ckpt = root / name
    if not name or "/" in name or not (ckpt / "state.pt").exists():
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a complete checkpoint: remove {root} to "
            "start the run over"
        )
    return ckpt


def write_checksums(directory: Path) -> None:
    """List every file under ``directory`` with its SHA-256 in ``directory/checksums.json``."""
    files = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != CHECKSUMS
    }
    atomic_write_text(
        directory / CHECKSUMS, json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n"
    )


def verify_checkpoint(ckpt: Path) -> bool:
    """Check every file of a checkpoint against its ``checksums.json``: True when checked, False
    for a checkpoint written before checksums (nothing to check); CheckpointError on a mismatch,
    a missing file or an unreadable one."""
    ckpt = Path(ckpt)
    listing = ckpt / CHECKSUMS
    if not listing.exists():
        return False
    fix = _restart_fix(ckpt.parent)
    data = _read_json(listing, fix)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise CheckpointError(f"{listing} is damaged (no file list): {fix}")
    for rel, digest in files.items():
        f = ckpt / rel
        try:
            actual = sha256_file(f)
        except FileNotFoundError:
            raise CheckpointError(f"{f} is missing from the checkpoint: {fix}") from None
        except OSError as e:
            raise _unreadable(f, e) from None
        if actual != digest:
            raise CheckpointError(f"{f} fails its SHA-256 checksum (corrupt or modified): {fix}")
    return True


def load_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor], what: str, fix: str
) -> None:
    """``model.load_state_dict(state)``, or a one-line CheckpointError ``what (misfit): fix``
    when the weights are of another architecture (model size, observation shape)."""
    own = model.state_dict()
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} (no weights found): {fix}")
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if wrong:
        k = wrong[0]
        detail = f"weight {k!r} is {tuple(state[k].shape)} there, {tuple(own[k].shape)} here"
    elif missing:
        detail = f"{len(missing)} weights are missing (first {missing[0]!r})"
    elif extra:
        detail = f"{len(extra)} weights are unknown here (first {extra[0]!r})"
    else:
        model.load_state_dict(state)
        return
    raise CheckpointError(f"{what} ({detail}): {fix}")


class RunDir:
    """A stage's directory; creating one for an existing run checks that the config matches."""

    def __init__(self, path: str | Path, cfg: Config, *, stage: str, info: dict[str, Any]):
        self.path = Path(path)
        self.cfg = cfg
        self.stage = stage
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.path / "config.yaml"
        if cfg_path.exists() and self.latest_checkpoint() is not None:
            previous = read_run_config(self.path)
            if _comparable(previous) != _comparable(cfg):
                diff = _first_difference(to_dict(previous), to_dict(cfg))
                raise CheckpointError(
                    f"{self.path} holds a run with a different config ({diff}): resume with the same "
                    "options, or choose a new --run-dir"
                )
            old = read_run_info(self.path)
            for key, value in info.items():
                if key in old and old[key] != value:
                    raise CheckpointError(
                        f"{self.path} holds a {old.get('stage', '?')} run with {key}={old[key]!r}, not {value!r}: "
                        "choose a new --run-dir"
                    )
        atomic_write_text(cfg_path, dump_yaml(cfg))
        meta = {"stage": stage, **info, "xtra_version": __version__, "command": " ".join(sys.argv)}
        atomic_write_text(self.path / RUN_INFO, json.dumps(meta, indent=2) + "\n")

    def write_final(self, summary: dict[str, Any]) -> None:
        """Mark the run finished with its summary (see :func:`read_final`)."""
        atomic_write_text(self.path / FINAL, json.dumps(summary, indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_root(self) -> Path:
        return self.path / CHECKPOINTS

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path)

    def save_checkpoint(
        self, step: int, state: dict[str, Any], extra: Callable[[Path], None] | None = None
    ) -> Path:
        """Write ``state`` (torch-picklable) and whatever ``extra(dir)`` writes, list their
        checksums, then switch LATEST and remove every other entry of ``checkpoints/``."""
        root = self.checkpoint_root
        root.mkdir(parents=True, exist_ok=True)
        name = checkpoint_name(step)
        tmp = root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        atomic_write(tmp / "state.pt", lambda f: torch.save(state, f))
        if extra is not None:
            extra(tmp)
        write_checksums(tmp)
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(root / "LATEST", name + "\n")
        self._remove_others(name)
        return final

    def _remove_others(self, keep: str) -> None:
        """Remove what a killed process left in ``checkpoints/`` beside LATEST and ``keep``
        (an older checkpoint, a half-written one)."""
        for old in self.checkpoint_root.iterdir():
            if old.name in (keep, "LATEST"):
                continue
            if old.is_dir() and not old.is_symlink():
                # Renamed first, so that a process killed while deleting it never leaves a
                # half-deleted step-N/ that looks like a checkpoint.
                trash = old
                if not old.name.startswith("."):
                    trash = old.with_name(f".trash-{old.name}-{os.getpid()}")
                    try:
                        os.replace(old, trash)
                    except OSError:
                        trash = old
                shutil.rmtree(trash, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[dict[str, Any], Path] | None:
        """(state, directory) of the newest checkpoint, its checksums verified (those written
        before checksums are loaded unchecked); None when the run has none."""
        ckpt = self.latest_checkpoint()
        if ckpt is None:
            return None
        self._remove_others(ckpt.name)
        checked = verify_checkpoint(ckpt)
        f = ckpt / "state.pt"
        try:
            state = load_pickled(f)
        except OSError as e:
            raise _unreadable(f, e) from None
        except Exception as e:  # unpickling damaged bytes raises anything; it is the file's fault
            what = "" if checked else " (a checkpoint without checksums: it is damaged)"
            raise CheckpointError(
                f"cannot read {f} ({_short(e)}){what}: {_restart_fix(ckpt.parent)}"
            ) from None
        if not isinstance(state, dict) or "step" not in state:
            raise CheckpointError(f"{f} is not a checkpoint: {_restart_fix(ckpt.parent)}")
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
            if resume_step is None:  # a fresh start: the old rows are of a run that is gone
                self.csv_path.unlink()
            else:
                rows, fields = _read_csv(self.csv_path)
                rows = _rows_up_to(self.csv_path, rows, resume_step)
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
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _csv_fix(path: Path) -> str:
    return (
        f"restore it from a backup, or remove it to resume without the rows of {path.name} "
        "written so far"
    )


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader), list(reader.fieldnames or [])
    except OSError as e:
        raise _unreadable(path, e) from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise CheckpointError(f"{path} is not CSV text ({_short(e)}): {_csv_fix(path)}") from None


def _rows_up_to(path: Path, rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
    """The rows of the training steps up to ``step`` (resuming drops the later ones)."""
    try:
        return [r for r in rows if int(float(r["step"])) <= step]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path} has a row without a valid step column: {_csv_fix(path)}"
        ) from None


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
    with open(csv_path, "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=EVAL_FIELDS).writerows(rows)


def truncate_eval_rows(path: Path, resume_step: int | None) -> None:
    """On resume, drop evaluation rows written after the checkpoint (they will be written again)."""
    csv_path = path / "eval.csv"
    if not csv_path.exists():
        return
    if resume_step is None:  # a fresh start: the old rows are of a run that is gone
        _write_csv(csv_path, EVAL_FIELDS, [])
        return
    rows, _ = _read_csv(csv_path)
    _write_csv(csv_path, EVAL_FIELDS, _rows_up_to(csv_path, rows, resume_step))


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
    """The final weights plus everything needed to rebuild the network (``load_model``), with
    the SHA-256 of that content (``sha256``), all in one atomic write."""
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
    payload["sha256"] = model_digest(payload)
    atomic_write(path, lambda f: torch.save(payload, f))


def model_digest(payload: dict[str, Any]) -> str:
    """The SHA-256 of a model file's content: its fields (as JSON) and every tensor's name,
    dtype, shape and bytes. Independent of how ``torch.save`` lays the file out."""
    h = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("model", "sha256")}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    for name in sorted(payload["model"]):
        t = payload["model"][name].detach().cpu().contiguous()
        h.update(f"\n{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _model_fix(path: Path) -> str:
    run = path.parent
    if path.name == "model.pt" and (run / CHECKPOINTS / "LATEST").exists():
        return (
            f"remove it and {run / FINAL}, then run the command in {run / RUN_INFO} again: "
            "it writes the model again from the run's last checkpoint"
        )
    return "copy it again from where it came from, or train it again"


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """(model, config, payload) from a file written by :func:`save_model` or a run directory.

    The content's SHA-256 is verified when the file has one (files written before checksums
    load unchecked)."""
    from xtra.model.networks import EfficientZeroNet

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise CheckpointError(f"no model at {path}: give a model.pt or a finished run directory")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory: give a model.pt or a finished run directory")
    try:
        payload = load_pickled(path)
    except OSError as e:
        raise _unreadable(path, e) from None
    except Exception as e:  # unpickling damaged bytes raises anything; it is the file's fault
        raise CheckpointError(
            f"cannot read {path} ({_short(e)}): it is damaged or not an xtra model file: "
            f"{_model_fix(path)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != "xtra-model":
        raise CheckpointError(
            f"{path} is not an xtra model file (written by `xtra train` and the other stages)"
        )
    if payload.get("version", 0) > 1:
        raise CheckpointError(
            f"{path} has model format version {payload['version']}: upgrade xtra to read it"
        )
    digest = payload.get("sha256")
    try:
        ok = digest is None or model_digest(payload) == digest
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError):
        ok = False  # a field of the wrong kind: damaged content
    if not ok:
        raise CheckpointError(
            f"{path} fails its SHA-256 checksum (corrupt or modified): {_model_fix(path)}"
        )
    try:
        cfg = from_dict(payload["config"])
        obs_shape = tuple(payload["obs_shape"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(
            f"{path} holds no valid config ({_short(e)}): {_model_fix(path)}"
        ) from None
    model = EfficientZeroNet(cfg.model, obs_shape)
    load_weights(
        model,
        payload["model"],
        f"the weights in {path} do not fit its own config (model.size={cfg.model.size}, "
        f"observations {obs_shape})",
        f"the file is damaged or was edited: {_model_fix(path)}",
    )
    return model.to(device), cfg, payload
