"""The dataset directory format: manifest, chunks, side columns, checksums (issue #5, B4, B10).

A dataset is a directory (format in ``docs/datasets.md``)::

    DATASET/dataset.json                  manifest (:func:`new_manifest`): game, protocol,
                                          behaviour policy, seeds, step counts, format version,
                                          tool version, chunk list with the SHA-256 of every file
    DATASET/chunks/chunk-NNNNNN/replay/   a replay snapshot (:mod:`xtra.data.snapshot`): the one
                                          storage format of replay checkpoints and datasets
    DATASET/chunks/chunk-NNNNNN/episodes.<col>.npy
                                          side columns, one row per trajectory
                                          (:data:`SIDE_COLUMNS`): the snapshot itself only knows
                                          ``terminated``
    DATASET/chunks/chunk-NNNNNN/collector.pt
                                          (collection only) the collector's state after this chunk

Only the chunks the manifest lists belong to the dataset; any other chunk directory is debris of
an interrupted write (:mod:`xtra.data.dataset_writer`) and is never read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtra.atomic import atomic_write_text, sha256_file
from xtra.data.snapshot import latest_name, read_snapshot
from xtra.errors import DatasetError, XtraError

FORMAT = "xtra-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
CHUNKS = "chunks"
REPLAY = "replay"
COLLECTOR = "collector.pt"
SIDE_COLUMNS: dict[str, Any] = {"game_over": np.int8, "life_loss": np.int8, "game_id": np.int64}
"""Per-trajectory side columns (``episodes.<name>.npy``); -1 means unknown."""


@dataclass(frozen=True)
class EpisodeFlags:
    """Side columns of one trajectory (-1: unknown, e.g. data kept from a training run)."""

    game_over: int
    life_loss: int
    game_id: int


def chunk_name(index: int) -> str:
    """Directory name of chunk ``index`` under ``chunks/``."""
    return f"chunk-{index:06d}"


def error_summary(e: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), for one-line errors."""
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


# --------------------------------------------------------------------------- manifest


def new_manifest(
    *,
    game: str,
    legal_actions: Sequence[int],
    frame_shape: Sequence[int],
    frame_stack: int,
    jpeg: bool,
    jpeg_quality: int,
    protocol: dict,
    behaviour_policy: dict,
    seeds: dict,
    source: dict,
    notes: Sequence[str],
    created_by: dict,
) -> dict[str, Any]:
    """The manifest of a new, empty dataset (its key order is part of the bytes on disk)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "game": game,
        "legal_actions": [int(x) for x in legal_actions],
        "frame_shape": [int(x) for x in frame_shape],
        "frame_stack": int(frame_stack),
        "jpeg": bool(jpeg),
        "jpeg_quality": int(jpeg_quality),
        "protocol": protocol,
        "behaviour_policy": behaviour_policy,
        "seeds": seeds,
        "source": source,
        "notes": list(notes),
        "steps": {"env_steps": 0},
        "complete": False,
        "created_by": created_by,
        "chunks": [],
    }


def chunk_entry(name: str, *, transitions: int, trajectories: int, files: dict[str, str]) -> dict:
    """The manifest's record of one chunk; ``files``: SHA-256 by path (:func:`chunk_checksums`)."""
    return {"name": name, "transitions": transitions, "trajectories": trajectories, "files": files}


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed ``dataset.json``, with format and version checked (DatasetError otherwise)."""
    f = Path(path) / MANIFEST
    if not Path(path).is_dir():
        raise DatasetError(f"no dataset at {path}: give a directory written by `xtra data ...`")
    try:
        m = json.loads(f.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"{path} has no {MANIFEST}: not an xtra dataset (or its collection never committed a chunk)"
        ) from None
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"{f} is not valid JSON ({error_summary(e)}): the dataset is damaged"
        ) from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DatasetError(f"{f} is not an xtra dataset manifest (format != {FORMAT!r})")
    v = m.get("format_version")
    if not isinstance(v, int):
        raise DatasetError(f"{f} has no integer format_version: the dataset is damaged")
    if v > FORMAT_VERSION:
        raise DatasetError(
            f"{path} has dataset format version {v}, newer than this xtra reads ({FORMAT_VERSION}): "
            "upgrade xtra"
        )
    if v < 1:
        raise DatasetError(f"{f} has an invalid format_version {v}")
    for key in ("game", "legal_actions", "frame_shape", "frame_stack", "chunks"):
        if key not in m:
            raise DatasetError(f"{f} lacks the field {key!r}: the dataset is damaged")
    return m


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace ``path/dataset.json`` atomically."""
    atomic_write_text(Path(path) / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def check_game(manifest: dict, game: str, path: Path) -> None:
    """DatasetError unless the dataset is of ``game`` (names compared like the env registry)."""
    from xtra.envs import resolve_game

    try:
        want = resolve_game(game)
    except XtraError:
        want = game
    have = manifest["game"]
    if want != have:
        raise DatasetError(
            f"{path} is a dataset of {have}, not {want}: give the {want} dataset for this game"
        )


# --------------------------------------------------------------------------- checksums


def chunk_checksums(chunk_dir: Path) -> dict[str, str]:
    """SHA-256 of every file under ``chunk_dir``, by path relative to it (sorted)."""
    return {
        p.relative_to(chunk_dir).as_posix(): sha256_file(p)
        for p in sorted(chunk_dir.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- chunk content


def load_snapshot(replay_dir: Path, *, mmap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of the snapshot ``replay_dir/LATEST`` names, every array memory-mapped
    (``mmap``); DatasetError if it cannot be read."""
    try:
        name = latest_name(replay_dir)
    except OSError as e:
        raise DatasetError(
            f"{replay_dir}/LATEST cannot be read ({e.strerror}): the dataset is damaged"
        ) from None
    if name is None:
        raise DatasetError(f"{replay_dir}/LATEST is missing or empty: the dataset is damaged")
    snap = replay_dir / name
    try:
        return read_snapshot(snap, mmap=mmap)
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"{snap} cannot be read ({error_summary(e)}): the dataset is damaged"
        ) from None


def side_column_file(name: str) -> str:
    """File name of side column ``name`` in a chunk directory."""
    return f"episodes.{name}.npy"


def read_side_column(chunk_dir: Path, name: str) -> np.ndarray:
    """Side column ``name`` ``[M]`` of a chunk (OSError / ValueError as numpy raises them)."""
    return np.load(chunk_dir / side_column_file(name), allow_pickle=False)


def flag_columns(flags: Sequence[EpisodeFlags]) -> dict[str, np.ndarray]:
    """Side columns ``{name: [M]}`` of ``M`` trajectories' flags, in :data:`SIDE_COLUMNS` dtypes."""
    return {
        k: np.asarray([getattr(f, k) for f in flags], dtype=dtype)
        for k, dtype in SIDE_COLUMNS.items()
    }


def write_side_columns(chunk_dir: Path, columns: dict[str, np.ndarray]) -> None:
    """Write (and fsync) every side column ``{name: [M]}`` into ``chunk_dir``."""
    for k in SIDE_COLUMNS:
        with open(chunk_dir / side_column_file(k), "wb") as f:
            np.save(f, columns[k], allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
