"""Replay snapshots on disk: the one storage format of replay checkpoints and offline datasets.

A snapshot root (a checkpoint's ``replay/``, or a dataset chunk's ``replay/``) holds::

    ROOT/LATEST                       name of the current snapshot directory (switched atomically)
    ROOT/snapshot-NNNNNN/meta.json    settings and first global indices (:func:`snapshot_meta`)
    ROOT/snapshot-NNNNNN/<array>.npy  one file per array (:func:`snapshot_arrays`)

Arrays, with ``N`` transitions, ``M`` trajectories, ``F`` frames (``S + T`` per trajectory),
``A`` legal actions:

* ``transitions.<column>`` ``[N, ...]`` (:func:`transition_columns`);
* ``trajectories.<column>`` ``[M]`` (:data:`TRAJECTORY_COLUMNS`);
* lossless frames ``frames [F, C, H, W]`` uint8, or JPEG frames ``frame_offsets [F]`` int64 and
  ``frame_nbytes [F]`` int32 into the byte pool ``jpeg_bytes [bytes]`` uint8;
* ``tree_leaf_values [N]`` float64, the sum tree's ``priority ** alpha`` (bit-identical draws
  after a reload).

Index columns hold *global* indices (insertion order since the buffer was created):
``transitions.traj`` into the trajectories, ``trajectories.frame_start`` into the frames,
``trajectories.trans_start`` into the transitions, ``frame_offsets`` into the JPEG bytes. The
first live item of each row space is ``meta["<space>_first"]``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xtra.atomic import atomic_write_text
from xtra.errors import DatasetError

FORMAT_VERSION = 1
LATEST = "LATEST"
META = "meta.json"

Columns = dict[str, tuple[tuple[int, ...], Any]]
"""``{name: (shape of one row, dtype)}``."""

TRAJECTORY_COLUMNS: Columns = {
    "frame_start": ((), np.int64),  # global index of the trajectory's first frame
    "trans_start": ((), np.int64),  # global index of its first transition
    "length": ((), np.int64),  # T
    "terminated": ((), np.bool_),
}
JPEG_FRAME_COLUMNS: Columns = {"frame_offsets": ((), np.int64), "frame_nbytes": ((), np.int32)}
JPEG_BYTE_COLUMNS: Columns = {"jpeg_bytes": ((), np.uint8)}
TREE_LEAF_VALUES = "tree_leaf_values"
BULK_ARRAYS = ("frames", "jpeg_bytes")
"""The frame data: memory-mapped by ``ReplayBuffer.load(mmap=True)``, streamed in blocks by
:func:`merge_snapshots`."""
SHARED_META = ("frame_shape", "frame_stack", "action_ids", "jpeg")
"""Meta fields that must agree for two snapshots (or a snapshot and a buffer) to hold the same
kind of data."""


def transition_columns(num_actions: int) -> Columns:
    """Per-transition columns; ``root_visits`` has one entry per legal action (``A``)."""
    return {
        "action": ((), np.int16),  # legal (minimal-set) action index
        "action_ale": ((), np.int16),  # the same action as an ALE id
        "reward": ((), np.float32),  # clipped
        "raw_reward": ((), np.float32),
        "root_value": ((), np.float32),
        "root_visits": ((int(num_actions),), np.float32),
        "traj": ((), np.int64),  # global trajectory id
        "pos": ((), np.int32),  # position t in the trajectory
        "priority": ((), np.float64),
    }


def raw_frame_columns(frame_shape: Sequence[int]) -> Columns:
    """The lossless frame column: ``frames`` ``[C, H, W]`` uint8 per row."""
    return {"frames": (tuple(int(d) for d in frame_shape), np.uint8)}


def snapshot_arrays(*, frame_shape: Sequence[int], num_actions: int, jpeg: bool) -> Columns:
    """Every array of a snapshot: ``{file stem: (shape after the row axis, dtype)}``."""
    frames = {**JPEG_FRAME_COLUMNS, **JPEG_BYTE_COLUMNS} if jpeg else raw_frame_columns(frame_shape)
    return {
        **{f"transitions.{k}": v for k, v in transition_columns(num_actions).items()},
        **{f"trajectories.{k}": v for k, v in TRAJECTORY_COLUMNS.items()},
        **frames,
        TREE_LEAF_VALUES: ((), np.float64),
    }


def snapshot_meta(
    *,
    frame_shape: Any,
    frame_stack: int,
    action_ids: Any,
    capacity: int,
    alpha: float,
    jpeg: bool,
    jpeg_quality: int,
    transitions_first: int,
    trajectories_first: int,
    tree_leaves: int,
    frames_first: int,
    jpeg_bytes_first: int | None = None,
) -> dict[str, Any]:
    """The content of ``meta.json`` (its key order is part of the bytes on disk).

    ``*_first``: global index of the first live transition / trajectory / frame / JPEG byte
    (``jpeg_bytes_first`` only with ``jpeg``); ``tree_leaves``: leaves of the sum tree.
    """
    meta = {
        "format_version": FORMAT_VERSION,
        "frame_shape": frame_shape,
        "frame_stack": frame_stack,
        "action_ids": action_ids,
        "capacity": capacity,
        "alpha": alpha,
        "jpeg": jpeg,
        "jpeg_quality": jpeg_quality,
        "transitions_first": transitions_first,
        "trajectories_first": trajectories_first,
        "tree_leaves": tree_leaves,
        "frames_first": frames_first,
    }
    if jpeg:
        meta["jpeg_bytes_first"] = jpeg_bytes_first
    return meta


# --------------------------------------------------------------------------- reading


def latest_name(root: Path) -> str | None:
    """The snapshot directory name ``root/LATEST`` holds; None if LATEST is missing or empty."""
    try:
        name = (Path(root) / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def read_snapshot(
    snap: Path, *, mmap: bool | Collection[str] = False
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, {file stem: array})`` of one snapshot directory ``snap``.

    ``mmap``: True memory-maps every array read-only, a collection only the arrays it names.
    Raises OSError / ValueError as numpy and json do (callers say what is damaged).
    """

    def mode(name: str) -> str | None:
        mapped = mmap if isinstance(mmap, bool) else name in mmap
        return "r" if mapped else None

    meta = json.loads((snap / META).read_text())
    arrays = {
        f.name[: -len(".npy")]: np.load(
            f, mmap_mode=mode(f.name[: -len(".npy")]), allow_pickle=False
        )
        for f in sorted(snap.glob("*.npy"))
    }
    return meta, arrays


# --------------------------------------------------------------------------- writing


def write_snapshot(root: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write a new snapshot under ``root`` and make it the LATEST; returns its directory.

    The snapshot is written and fsynced under a temporary name, renamed, and only then is
    ``LATEST`` switched (atomically), so a crash at any point leaves the previous snapshot
    readable. Older snapshots are then removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    previous = latest_name(root)
    number = int(previous.split("-")[-1]) + 1 if previous else 1
    name = _snapshot_name(number)
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for key, arr in arrays.items():
        with open(tmp / f"{key}.npy", "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
    atomic_write_text(tmp / META, json.dumps(meta, indent=1))
    os.replace(tmp, root / name)
    atomic_write_text(root / LATEST, name + "\n")
    for old in root.iterdir():
        if old.is_dir() and old.name != name and old.name.lstrip(".").startswith("snapshot-"):
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def _snapshot_name(number: int) -> str:
    return f"snapshot-{number:06d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- merging


def merge_snapshots(
    sources: Sequence[tuple[dict, dict[str, np.ndarray]]], out_root: Path, *, alpha: float
) -> dict[str, Any]:
    """Concatenate snapshots ``(meta, arrays)`` into one new snapshot under ``out_root``.

    Streams column by column through memory-mapped output files, so the frames never have to fit
    in memory. Global indices are renumbered from 0 (``*_first`` = 0); priorities are kept and
    the tree leaves recomputed as ``priority ** alpha``. Returns the written meta.
    """
    if not sources:
        raise ValueError("nothing to merge")
    meta0 = sources[0][0]
    jpeg = bool(meta0["jpeg"])
    for meta, _ in sources:
        for key in SHARED_META:
            if meta[key] != meta0[key]:
                raise DatasetError(
                    f"cannot merge replay snapshots with different {key} ({meta[key]} vs "
                    f"{meta0[key]}): they hold different games or settings"
                )
    snap = out_root / _snapshot_name(1)
    snap.mkdir(parents=True)
    layout = snapshot_arrays(
        frame_shape=meta0["frame_shape"], num_actions=len(meta0["action_ids"]), jpeg=jpeg
    )
    names = [n for n in layout if n != TREE_LEAF_VALUES]
    frame_rows = "frame_offsets" if jpeg else "frames"  # one row per frame
    totals = {n: sum(len(a[n]) for _, a in sources) for n in names}
    offsets = {"traj": 0, "trans": 0, "frame": 0, "byte": 0}
    outs = {
        n: np.lib.format.open_memmap(
            snap / f"{n}.npy",
            mode="w+",
            dtype=sources[0][1][n].dtype,
            shape=(totals[n], *sources[0][1][n].shape[1:]),
        )
        for n in names
    }
    at = dict.fromkeys(names, 0)
    for meta, arrays in sources:
        shift = {
            "transitions.traj": offsets["traj"] - meta["trajectories_first"],
            "trajectories.frame_start": offsets["frame"] - meta["frames_first"],
            "trajectories.trans_start": offsets["trans"] - meta["transitions_first"],
        }
        if jpeg:
            shift["frame_offsets"] = offsets["byte"] - meta["jpeg_bytes_first"]
        for n in names:
            src = arrays[n]
            step = (
                1 << 16
                if n not in BULK_ARRAYS
                else max(1, (1 << 26) // max(1, int(np.prod(src.shape[1:])) * src.dtype.itemsize))
            )
            for i in range(0, len(src), step):
                block = np.asarray(src[i : i + step])
                if n in shift:
                    block = block + shift[n]
                outs[n][at[n] + i : at[n] + i + len(block)] = block
            at[n] += len(src)
        offsets["traj"] += len(arrays["trajectories.length"])
        offsets["trans"] += len(arrays["transitions.action"])
        offsets["frame"] += len(arrays[frame_rows])
        if jpeg:
            offsets["byte"] += len(arrays["jpeg_bytes"])
    priority = np.asarray(outs["transitions.priority"])
    np.save(snap / f"{TREE_LEAF_VALUES}.npy", priority ** float(alpha), allow_pickle=False)
    for arr in outs.values():
        arr.flush()
    outs.clear()
    for f in snap.glob("*.npy"):
        _fsync_file(f)
    n = totals["transitions.action"]
    meta = snapshot_meta(
        frame_shape=meta0["frame_shape"],
        frame_stack=meta0["frame_stack"],
        action_ids=meta0["action_ids"],
        capacity=max(n, 1),
        alpha=float(alpha),
        jpeg=jpeg,
        jpeg_quality=meta0["jpeg_quality"],
        transitions_first=0,
        trajectories_first=0,
        tree_leaves=max(n, 1),
        frames_first=0,
        jpeg_bytes_first=0,
    )
    atomic_write_text(snap / META, json.dumps(meta, indent=1))
    atomic_write_text(out_root / LATEST, snap.name + "\n")
    return meta


def merge_snapshots_in_memory(
    sources: Sequence[tuple[dict, dict[str, np.ndarray]]], *, alpha: float
) -> dict[str, Any]:
    """:func:`merge_snapshots` into memory: a ``ReplayBuffer.state_dict`` (small data only)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "replay"
        meta = merge_snapshots(sources, root, alpha=alpha)
        _, arrays = read_snapshot(root / _snapshot_name(1))
    return {"meta": meta, "arrays": arrays}
