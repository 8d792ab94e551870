"""Offline datasets: one game's trajectories on disk, checksummed, memory-mappable (issue #5, B4, B10).

A dataset is a directory (format in ``docs/datasets.md``)::

    DATASET/dataset.json                  manifest: game, protocol, behaviour policy, seeds, step
                                          counts, format version, tool version, chunk list with the
                                          SHA-256 of every file
    DATASET/chunks/chunk-NNNNNN/replay/   a ReplayBuffer snapshot (LATEST + snapshot-*/ of .npy
                                          columns + meta.json): the one storage format of replay
                                          checkpoints and datasets
    DATASET/chunks/chunk-NNNNNN/episodes.<col>.npy
                                          side columns, one row per trajectory: game_over,
                                          life_loss (int8, 1/0, -1 unknown), game_id (int64, -1
                                          unknown): ReplayBuffer itself only knows ``terminated``
    DATASET/chunks/chunk-NNNNNN/collector.pt
                                          (collection only) the collector's state after this chunk

Writing is append-only and atomic per chunk: finished trajectories are buffered, written as a new
chunk directory under a temporary name, renamed, and only then listed in ``dataset.json`` (written
atomically). A chunk directory that the manifest does not list is debris of an interrupted write
and is never read. :meth:`DatasetWriter.finalize` merges the chunks into one (streamed, so frames
never need to fit in memory) so that :meth:`Dataset.as_source` can memory-map the frames.

Readers get a :class:`~xtra.data.replay.ReplayBuffer` (frames memory-mapped): the learner samples
a dataset exactly like the online replay (``sample`` -> ``SampledBatch``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xtra import __version__
from xtra.atomic import atomic_write_text
from xtra.data.replay import FORMAT_VERSION as REPLAY_FORMAT_VERSION
from xtra.data.replay import ReplayBuffer
from xtra.data.trajectory import Trajectory
from xtra.errors import DatasetError, XtraError

FORMAT = "xtra-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
CHUNKS = "chunks"
REPLAY = "replay"
COLLECTOR = "collector.pt"
SIDE_COLUMNS: dict[str, Any] = {"game_over": np.int8, "life_loss": np.int8, "game_id": np.int64}
"""Per-trajectory side columns (``episodes.<name>.npy``); -1 means unknown."""

_TRANS_COLUMNS: dict[str, tuple[tuple[str, ...], Any]] = {
    # name: (shape suffix names, dtype) as ReplayBuffer writes them
    "action": ((), np.int16),
    "action_ale": ((), np.int16),
    "reward": ((), np.float32),
    "raw_reward": ((), np.float32),
    "root_value": ((), np.float32),
    "root_visits": (("A",), np.float32),
    "traj": ((), np.int64),
    "pos": ((), np.int32),
    "priority": ((), np.float64),
}
_TRAJ_COLUMNS: dict[str, Any] = {
    "frame_start": np.int64,
    "trans_start": np.int64,
    "length": np.int64,
    "terminated": np.bool_,
}


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path, block: int = 1 << 23) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _files_of(chunk_dir: Path) -> dict[str, str]:
    """SHA-256 of every file under ``chunk_dir``, by path relative to it."""
    return {
        p.relative_to(chunk_dir).as_posix(): sha256_file(p)
        for p in sorted(chunk_dir.rglob("*"))
        if p.is_file()
    }


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _snapshot_dir(replay_dir: Path) -> Path:
    try:
        name = (replay_dir / "LATEST").read_text().strip()
    except OSError as e:
        raise DatasetError(
            f"{replay_dir}/LATEST cannot be read ({e.strerror}): the dataset is damaged"
        ) from None
    return replay_dir / name


def _load_snapshot(replay_dir: Path, mmap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of the snapshot ``replay_dir/LATEST`` names; every array memory-mapped."""
    snap = _snapshot_dir(replay_dir)
    try:
        meta = json.loads((snap / "meta.json").read_text())
        arrays = {
            f.name[: -len(".npy")]: np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
            for f in sorted(snap.glob("*.npy"))
        }
    except (OSError, ValueError) as e:
        raise DatasetError(f"{snap} cannot be read ({_short(e)}): the dataset is damaged") from None
    return meta, arrays


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


# --------------------------------------------------------------------------- merge


def merge_snapshots(
    sources: Sequence[tuple[dict, dict[str, np.ndarray]]], out_replay_dir: Path, *, alpha: float
) -> dict:
    """Concatenate replay snapshots ``(meta, arrays)`` into one new snapshot directory.

    Streams column by column through memory-mapped output files, so the frames never have to fit
    in memory. Global indices are renumbered from 0 (``*_first`` = 0); priorities are kept and
    the tree leaves recomputed as ``priority ** alpha``. Returns the written meta.
    """
    if not sources:
        raise ValueError("nothing to merge")
    meta0 = sources[0][0]
    jpeg = bool(meta0["jpeg"])
    for meta, _ in sources:
        for key in ("frame_shape", "frame_stack", "action_ids", "jpeg"):
            if meta[key] != meta0[key]:
                raise DatasetError(
                    f"cannot merge replay snapshots with different {key} ({meta[key]} vs "
                    f"{meta0[key]}): they hold different games or settings"
                )
    snap = out_replay_dir / "snapshot-000001"
    snap.mkdir(parents=True)
    frame_cols = ["frame_offsets", "frame_nbytes", "jpeg_bytes"] if jpeg else ["frames"]
    names = (
        [f"transitions.{c}" for c in _TRANS_COLUMNS]
        + [f"trajectories.{c}" for c in _TRAJ_COLUMNS]
        + frame_cols
    )
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
                if n not in ("frames", "jpeg_bytes")
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
        offsets["frame"] += len(arrays[frame_cols[0]])
        if jpeg:
            offsets["byte"] += len(arrays["jpeg_bytes"])
    priority = np.asarray(outs["transitions.priority"])
    np.save(snap / "tree_leaf_values.npy", priority ** float(alpha), allow_pickle=False)
    for arr in outs.values():
        arr.flush()
    outs.clear()
    for f in snap.glob("*.npy"):
        _fsync_file(f)
    n = totals["transitions.action"]
    meta = {
        "format_version": REPLAY_FORMAT_VERSION,
        "frame_shape": meta0["frame_shape"],
        "frame_stack": meta0["frame_stack"],
        "action_ids": meta0["action_ids"],
        "capacity": max(n, 1),
        "alpha": float(alpha),
        "jpeg": jpeg,
        "jpeg_quality": meta0["jpeg_quality"],
        "transitions_first": 0,
        "trajectories_first": 0,
        "tree_leaves": max(n, 1),
        "frames_first": 0,
    }
    if jpeg:
        meta["jpeg_bytes_first"] = 0
    atomic_write_text(snap / "meta.json", json.dumps(meta, indent=1))
    atomic_write_text(out_replay_dir / "LATEST", snap.name + "\n")
    return meta


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class EpisodeFlags:
    """Side columns of one trajectory (-1: unknown, e.g. data kept from a training run)."""

    game_over: int
    life_loss: int
    game_id: int


class Dataset:
    """A dataset directory opened for reading; cheap (reads only ``dataset.json``).

    Args:
        path: the dataset directory.
        game: if given, the dataset must be of this game (DatasetError otherwise).
    """

    def __init__(self, path: str | Path, *, game: str | None = None) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if game is not None:
            check_game(self.manifest, game, self.path)

    @classmethod
    def open(cls, path: str | Path, *, game: str | None = None) -> Dataset:
        """Same as ``Dataset(path, game=game)``."""
        return cls(path, game=game)

    # ------------------------------------------------------------------ properties

    @property
    def game(self) -> str:
        return str(self.manifest["game"])

    @property
    def legal_actions(self) -> np.ndarray:
        return np.asarray(self.manifest["legal_actions"], dtype=np.int64)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        c, h, w = self.manifest["frame_shape"]
        return int(c), int(h), int(w)

    @property
    def frame_stack(self) -> int:
        return int(self.manifest["frame_stack"])

    @property
    def num_transitions(self) -> int:
        return sum(int(c["transitions"]) for c in self.manifest["chunks"])

    @property
    def num_trajectories(self) -> int:
        return sum(int(c["trajectories"]) for c in self.manifest["chunks"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    def chunk_dirs(self) -> list[Path]:
        return [self.path / CHUNKS / c["name"] for c in self.manifest["chunks"]]

    # ------------------------------------------------------------------ checks

    def validate(self, *, checksums: bool = True) -> list[str]:
        """Every problem found (empty list: the dataset is sound). Never raises for bad data."""
        return validate_dataset(self.path, checksums=checksums)

    def check(self, *, checksums: bool = True) -> None:
        """Raise DatasetError naming the first problem (and how many there are)."""
        problems = self.validate(checksums=checksums)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DatasetError(
                f"{self.path}: {problems[0]}{more}; run `xtra data validate {self.path}` for all"
            )

    # ------------------------------------------------------------------ reading

    def as_source(
        self,
        *,
        game: str | None = None,
        verify: bool = True,
        alpha: float | None = None,
        reset_priorities: bool = True,
    ) -> ReplayBuffer:
        """A ReplayBuffer over the dataset (frames memory-mapped when it is one chunk).

        Args:
            game: the game the caller expects (DatasetError if the dataset is of another).
            verify: check checksums and structure first (:meth:`check`); off only for data just
                validated (hashing reads every byte once).
            alpha: priority exponent (default: the stored one).
            reset_priorities: give every transition priority 1 (XTRA at load, spec B4.2).
        """
        if game is not None:
            check_game(self.manifest, game, self.path)
        if not self.manifest["chunks"]:
            raise DatasetError(f"{self.path} holds no trajectories yet: collect some first")
        self.check(checksums=verify)
        dirs = self.chunk_dirs()
        if len(dirs) == 1:
            buf = ReplayBuffer.load(dirs[0] / REPLAY, mmap=True, alpha=alpha)
        else:  # an unfinished collection: merge into memory (finalize merges on disk)
            sources = [_load_snapshot(d / REPLAY) for d in dirs]
            a = float(sources[0][0]["alpha"]) if alpha is None else alpha
            state = _concat_in_memory(sources, alpha=a)
            buf = ReplayBuffer(
                frame_shape=self.frame_shape,
                frame_stack=self.frame_stack,
                action_ids=self.legal_actions,
                capacity=max(self.num_transitions, 1),
                alpha=a,
                jpeg=state["meta"]["jpeg"],
                jpeg_quality=state["meta"]["jpeg_quality"],
            )
            buf.load_state_dict(state)
        if reset_priorities and len(buf):
            buf.reset_priorities(1.0)
        return buf

    def flags(self) -> dict[str, np.ndarray]:
        """Side columns ``{name: [num_trajectories]}`` over all chunks, in trajectory order."""
        out: dict[str, list[np.ndarray]] = {k: [] for k in SIDE_COLUMNS}
        for d in self.chunk_dirs():
            for k in SIDE_COLUMNS:
                try:
                    out[k].append(np.load(d / f"episodes.{k}.npy", allow_pickle=False))
                except (OSError, ValueError) as e:
                    raise DatasetError(
                        f"{d}/episodes.{k}.npy cannot be read ({_short(e)}): run `xtra data validate`"
                    ) from None
        return {
            k: np.concatenate(v) if v else np.zeros(0, dtype=SIDE_COLUMNS[k])
            for k, v in out.items()
        }

    def trajectories(self) -> Iterator[tuple[Trajectory, EpisodeFlags]]:
        """Every trajectory with its side flags, in storage order (frames decoded)."""
        for d in self.chunk_dirs():
            buf = ReplayBuffer.load(d / REPLAY, mmap=True)
            flags = {k: np.load(d / f"episodes.{k}.npy") for k in SIDE_COLUMNS}
            for i, tid in enumerate(buf.trajectory_ids()):
                yield (
                    buf.trajectory(int(tid)),
                    EpisodeFlags(**{k: int(v[i]) for k, v in flags.items()}),
                )

    def info(self) -> dict[str, Any]:
        """Summary: counts, score statistics, action histogram (reads only the small columns)."""
        m = self.manifest
        lengths, returns, actions = [], [], []
        for d in self.chunk_dirs():
            _, arrays = _load_snapshot(d / REPLAY)
            ln = np.asarray(arrays["trajectories.length"])
            raw = np.asarray(arrays["transitions.raw_reward"], dtype=np.float64)
            starts = np.concatenate([[0], np.cumsum(ln)[:-1]]).astype(np.int64)
            lengths.append(ln)
            returns.append(np.add.reduceat(raw, starts) if len(raw) else np.zeros(0))
            actions.append(np.asarray(arrays["transitions.action"], dtype=np.int64))
        lengths_a = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        traj_ret = np.concatenate(returns) if returns else np.zeros(0)
        acts = np.concatenate(actions) if actions else np.zeros(0, np.int64)
        flags = self.flags()
        # Scores per game: sum the trajectories (lives) of each complete game.
        gid, over = flags["game_id"], flags["game_over"]
        done = np.unique(gid[(over == 1) & (gid >= 0)])
        scores = np.array([traj_ret[gid == g].sum() for g in done])
        a = len(self.legal_actions)
        hist = np.bincount(acts, minlength=a)[:a] if acts.size else np.zeros(a, np.int64)

        def stats(x: np.ndarray) -> dict[str, float] | None:
            if x.size == 0:
                return None
            return {
                "mean": float(x.mean()),
                "std": float(x.std()),
                "min": float(x.min()),
                "max": float(x.max()),
            }

        return {
            "path": str(self.path),
            "game": self.game,
            "format_version": m["format_version"],
            "complete": self.complete,
            "frames": "jpeg" if m.get("jpeg") else "lossless",
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "behaviour_policy": m.get("behaviour_policy"),
            "env_steps": m.get("steps", {}).get("env_steps"),
            "transitions": int(lengths_a.sum()),
            "trajectories": int(lengths_a.size),
            "terminated_by_life_loss": int((flags["life_loss"] == 1).sum()),
            "game_overs": int((over == 1).sum()),
            "flags_unknown": int((over < 0).sum()),
            "complete_games": int(done.size),
            "game_score": stats(scores),
            "trajectory_return": stats(traj_ret),
            "trajectory_length": stats(lengths_a.astype(np.float64)),
            "action_histogram": {
                f"{i} (ALE {int(self.legal_actions[i])})": int(hist[i]) for i in range(a)
            },
            "size_on_disk_bytes": sum(
                p.stat().st_size for p in self.path.rglob("*") if p.is_file()
            ),
            "created_by": m.get("created_by"),
            "notes": m.get("notes", []),
        }

    def frames_for_strip(self, num_frames: int) -> list[np.ndarray]:
        """``num_frames`` frames evenly spaced over the first trajectory (for a PNG strip)."""
        if not self.manifest["chunks"]:
            raise DatasetError(f"{self.path} holds no trajectories: nothing to draw")
        buf = ReplayBuffer.load(self.chunk_dirs()[0] / REPLAY, mmap=True)
        traj = buf.trajectory(int(buf.trajectory_ids()[0]))
        idx = np.linspace(0, len(traj.frames) - 1, num=min(num_frames, len(traj.frames)))
        return [traj.frames[int(i)] for i in idx]


# --------------------------------------------------------------------------- manifest


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
        raise DatasetError(f"{f} is not valid JSON ({_short(e)}): the dataset is damaged") from None
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


def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_text(Path(path) / MANIFEST, json.dumps(manifest, indent=1) + "\n")


# --------------------------------------------------------------------------- validation


def validate_dataset(path: str | Path, *, checksums: bool = True) -> list[str]:
    """Every problem of the dataset at ``path``, one line each (empty: sound)."""
    path = Path(path)
    try:
        m = read_manifest(path)
    except DatasetError as e:
        return [str(e)]
    problems: list[str] = []
    from xtra.games import get_game

    legal = list(m["legal_actions"])
    try:
        registry_legal = list(get_game(m["game"]).legal_actions)
        if registry_legal != legal:
            problems.append(
                f"dataset.json legal_actions {legal} differ from the registry's {registry_legal} "
                f"for {m['game']}: the data was made for another action set"
            )
    except XtraError:
        problems.append(f"dataset.json names an unknown game {m['game']!r}")
        registry_legal = legal
    chunk_names = [c.get("name") for c in m["chunks"]]
    if len(set(chunk_names)) != len(chunk_names):
        problems.append("dataset.json lists a chunk twice")
    for c in m["chunks"]:
        problems += [
            f"{c.get('name')}: {p}"
            for p in _chunk_problems(path, c, m, set(registry_legal), checksums)
        ]
    return problems


def _chunk_problems(
    path: Path, c: dict, m: dict, legal_set: set[int], checksums: bool
) -> list[str]:
    d = path / CHUNKS / str(c.get("name"))
    if not d.is_dir():
        return [f"chunk directory {d} is missing"]
    problems: list[str] = []
    files = c.get("files", {})
    for rel, digest in files.items():
        f = d / rel
        if not f.is_file():
            problems.append(f"file {rel} is missing")
        elif checksums and sha256_file(f) != digest:
            problems.append(f"file {rel} fails its SHA-256 checksum (corrupt or modified)")
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if p.is_file() and rel not in files:
            problems.append(f"file {rel} is not listed in dataset.json")
    try:
        meta, arrays = _load_snapshot(d / REPLAY)
    except DatasetError as e:
        return problems + [str(e)]
    return problems + _structure_problems(meta, arrays, d, c, m, legal_set)


def _structure_problems(
    meta: dict, arrays: dict[str, np.ndarray], d: Path, c: dict, m: dict, legal_set: set[int]
) -> list[str]:
    problems: list[str] = []
    s = int(m["frame_stack"])
    a = len(m["legal_actions"])
    fs = tuple(m["frame_shape"])
    if meta.get("format_version") != REPLAY_FORMAT_VERSION:
        problems.append(
            f"replay snapshot format {meta.get('format_version')} is not {REPLAY_FORMAT_VERSION}"
        )
    for key, want in (
        ("frame_shape", list(fs)),
        ("frame_stack", s),
        ("action_ids", list(m["legal_actions"])),
        ("jpeg", bool(m.get("jpeg", False))),
    ):
        if meta.get(key) != want:
            problems.append(f"replay meta {key}={meta.get(key)} but dataset.json says {want}")
    # columns: presence, dtype, shape
    expected: dict[str, tuple[tuple[int, ...], Any]] = {}
    for name, (suffix, dtype) in _TRANS_COLUMNS.items():
        expected[f"transitions.{name}"] = (tuple(a for _ in suffix), dtype)
    for name, dtype in _TRAJ_COLUMNS.items():
        expected[f"trajectories.{name}"] = ((), dtype)
    if meta.get("jpeg"):
        expected.update(
            frame_offsets=((), np.int64), frame_nbytes=((), np.int32), jpeg_bytes=((), np.uint8)
        )
    else:
        expected["frames"] = (fs, np.uint8)
    expected["tree_leaf_values"] = ((), np.float64)
    ok = True
    for name, (shape, dtype) in expected.items():
        arr = arrays.get(name)
        if arr is None:
            problems.append(f"column {name} is missing")
            ok = False
        elif arr.dtype != np.dtype(dtype) or tuple(arr.shape[1:]) != shape:
            problems.append(
                f"column {name} is {list(arr.shape)} {arr.dtype}, expected [*, "
                f"{', '.join(map(str, shape))}] {np.dtype(dtype)}"
            )
            ok = False
    flags: dict[str, np.ndarray] = {}
    for k, dtype in SIDE_COLUMNS.items():
        try:
            flags[k] = np.load(d / f"episodes.{k}.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            problems.append(f"side column episodes.{k}.npy cannot be read ({_short(e)})")
            ok = False
            continue
        if flags[k].dtype != np.dtype(dtype) or flags[k].ndim != 1:
            problems.append(
                f"side column episodes.{k}.npy is {flags[k].dtype}{list(flags[k].shape)}"
            )
            ok = False
    if not ok:
        return problems
    n_trans = len(arrays["transitions.action"])
    n_traj = len(arrays["trajectories.length"])
    for name in expected:
        if name.startswith("transitions.") and len(arrays[name]) != n_trans:
            problems.append(f"column {name} has {len(arrays[name])} rows, expected {n_trans}")
        if name.startswith("trajectories.") and len(arrays[name]) != n_traj:
            problems.append(f"column {name} has {len(arrays[name])} rows, expected {n_traj}")
    if len(arrays["tree_leaf_values"]) != n_trans:
        problems.append("column tree_leaf_values does not have one row per transition")
    for k, v in flags.items():
        if len(v) != n_traj:
            problems.append(f"side column episodes.{k}.npy has {len(v)} rows, expected {n_traj}")
    if n_trans != int(c.get("transitions", -1)) or n_traj != int(c.get("trajectories", -1)):
        problems.append(
            f"holds {n_trans} transitions / {n_traj} trajectories, dataset.json says "
            f"{c.get('transitions')} / {c.get('trajectories')}"
        )
    if problems:
        return problems
    length = np.asarray(arrays["trajectories.length"])
    trans_start = np.asarray(arrays["trajectories.trans_start"]) - meta["transitions_first"]
    frame_start = np.asarray(arrays["trajectories.frame_start"]) - meta["frames_first"]
    n_frames = len(arrays["frame_offsets" if meta["jpeg"] else "frames"])
    if np.any(length < 1):
        problems.append("a trajectory has length < 1")
    exp_trans = np.concatenate([[0], np.cumsum(length)[:-1]]) if n_traj else length
    exp_frames = np.concatenate([[0], np.cumsum(length + s)[:-1]]) if n_traj else length
    if int(length.sum()) != n_trans or not np.array_equal(trans_start, exp_trans):
        problems.append("trajectory lengths/starts do not tile the transition rows")
    if int((length + s).sum()) != n_frames or not np.array_equal(frame_start, exp_frames):
        problems.append(
            f"holds {n_frames} frames, but its trajectories need {int((length + s).sum())} "
            f"(S + T each): frames are missing or extra"
        )
    if problems:
        return problems
    traj = np.asarray(arrays["transitions.traj"]) - meta["trajectories_first"]
    pos = np.asarray(arrays["transitions.pos"], dtype=np.int64)
    exp_traj = np.repeat(np.arange(n_traj), length)
    exp_pos = np.arange(n_trans) - np.repeat(exp_trans, length)
    if not (np.array_equal(traj, exp_traj) and np.array_equal(pos, exp_pos)):
        problems.append("transition trajectory ids / positions are inconsistent")
    act = np.asarray(arrays["transitions.action"], dtype=np.int64)
    ale = np.asarray(arrays["transitions.action_ale"], dtype=np.int64)
    bad = (act < 0) | (act >= a)
    if bad.any():
        problems.append(
            f"{int(bad.sum())} actions outside the legal indices 0..{a - 1} "
            f"(first at transition {int(np.argmax(bad))})"
        )
    legal_arr = np.asarray(m["legal_actions"], dtype=np.int64)
    not_legal = ~np.isin(ale, np.asarray(sorted(legal_set), dtype=np.int64))
    if not_legal.any():
        problems.append(
            f"{int(not_legal.sum())} ALE actions outside {m['game']}'s legal set "
            f"{sorted(legal_set)} (first: {int(ale[np.argmax(not_legal)])} at transition "
            f"{int(np.argmax(not_legal))})"
        )
    elif not bad.any() and not np.array_equal(legal_arr[act], ale):
        problems.append("ALE actions do not match legal_actions[action]")
    for name in ("reward", "raw_reward", "root_value", "root_visits"):
        col = np.asarray(arrays[f"transitions.{name}"])
        if not np.all(np.isfinite(col)):
            problems.append(f"column transitions.{name} has non-finite values")
    rew = np.asarray(arrays["transitions.reward"])
    if m.get("protocol", {}).get("clip_rewards") and np.any(np.abs(rew) > 1.0):
        problems.append("clipped rewards outside [-1, 1] although the protocol clips rewards")
    visits = np.asarray(arrays["transitions.root_visits"])
    if np.any(visits < 0):
        problems.append("negative root visit probabilities")
    if meta["jpeg"]:
        off = np.asarray(arrays["frame_offsets"]) - meta["jpeg_bytes_first"]
        nb = np.asarray(arrays["frame_nbytes"])
        if np.any(off < 0) or np.any(off + nb > len(arrays["jpeg_bytes"])):
            problems.append("JPEG frame offsets point outside the byte pool")
    go, ll = flags["game_over"], flags["life_loss"]
    if np.any((go < -1) | (go > 1)) or np.any((ll < -1) | (ll > 1)):
        problems.append("side flags must be -1, 0 or 1")
    term = np.asarray(arrays["trajectories.terminated"])
    known = (go >= 0) & (ll >= 0)
    if np.any(known & ((go == 1) | (ll == 1)) & ~term & (go == 1)):
        pass  # a game cut at the step cap is game over without termination: allowed
    if np.any(known & (ll == 1) & ~term):
        problems.append("a trajectory ends with a life loss but is not marked terminated")
    return problems


def _concat_in_memory(sources: list[tuple[dict, dict[str, np.ndarray]]], *, alpha: float) -> dict:
    """A ReplayBuffer state dict concatenating several snapshots (small data; tests, partial sets)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        meta = merge_snapshots(sources, Path(tmp) / REPLAY, alpha=alpha)
        _, arrays = _load_snapshot(Path(tmp) / REPLAY, mmap=False)
    return {"meta": meta, "arrays": arrays}


# --------------------------------------------------------------------------- writer


class DatasetWriter:
    """Writes a dataset chunk by chunk; a killed writer loses at most the uncommitted trajectories.

    Use :meth:`create` for a new dataset or :meth:`resume` for an existing one; :meth:`add`
    finished trajectories, :meth:`commit` them as a chunk (atomically), :meth:`finalize` at the end.
    """

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._pending: list[tuple[Trajectory, EpisodeFlags]] = []

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        game: str,
        legal_actions: Sequence[int],
        frame_shape: Sequence[int],
        frame_stack: int,
        protocol: dict,
        behaviour_policy: dict,
        tool: str,
        seeds: dict | None = None,
        source: dict | None = None,
        notes: Sequence[str] = (),
        jpeg: bool = False,
        jpeg_quality: int = 95,
    ) -> DatasetWriter:
        path = Path(path)
        if (path / MANIFEST).exists():
            raise DatasetError(
                f"{path} already holds a dataset: choose a new output path or remove it"
            )
        if path.exists() and any(p for p in path.iterdir() if p.name != CHUNKS):
            raise DatasetError(f"{path} exists and is not empty: choose a new output path")
        path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(path / CHUNKS, ignore_errors=True)
        (path / CHUNKS).mkdir()
        manifest = {
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
            "seeds": seeds or {},
            "source": source or {},
            "notes": list(notes),
            "steps": {"env_steps": 0},
            "complete": False,
            "created_by": {"tool": tool, "xtra_version": __version__, "created_at": _now()},
            "chunks": [],
        }
        write_manifest(path, manifest)
        return cls(path, manifest)

    @classmethod
    def resume(cls, path: str | Path) -> DatasetWriter:
        """Reopen a dataset for appending; uncommitted chunk debris is removed."""
        path = Path(path)
        manifest = read_manifest(path)
        listed = {c["name"] for c in manifest["chunks"]}
        for p in (path / CHUNKS).iterdir():
            if p.name not in listed:
                shutil.rmtree(p, ignore_errors=True)
        return cls(path, manifest)

    @property
    def num_transitions(self) -> int:
        committed = sum(int(c["transitions"]) for c in self.manifest["chunks"])
        return committed + sum(t.length for t, _ in self._pending)

    @property
    def pending_transitions(self) -> int:
        return sum(t.length for t, _ in self._pending)

    def last_collector_state(self) -> Path | None:
        if not self.manifest["chunks"]:
            return None
        f = self.path / CHUNKS / self.manifest["chunks"][-1]["name"] / COLLECTOR
        return f if f.exists() else None

    def add(
        self, trajectory: Trajectory, *, game_over: int = -1, life_loss: int = -1, game_id: int = -1
    ) -> None:
        if trajectory.length == 0:
            return
        trajectory.validate(
            frame_stack=self.manifest["frame_stack"],
            frame_shape=self.manifest["frame_shape"],
            num_actions=len(self.manifest["legal_actions"]),
        )
        self._pending.append(
            (trajectory, EpisodeFlags(int(game_over), int(life_loss), int(game_id)))
        )

    def commit(
        self, *, collector_state: Any = None, manifest_updates: dict | None = None
    ) -> Path | None:
        """Write the pending trajectories as one chunk, then list it in the manifest (atomic)."""
        if not self._pending and collector_state is None and not manifest_updates:
            return None
        name = f"chunk-{len(self.manifest['chunks']):06d}"
        final = self.path / CHUNKS / name
        created = None
        if self._pending or collector_state is not None:
            tmp = self.path / CHUNKS / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            n = max(sum(t.length for t, _ in self._pending), 1)
            buf = ReplayBuffer(
                frame_shape=self.manifest["frame_shape"],
                frame_stack=self.manifest["frame_stack"],
                action_ids=self.manifest["legal_actions"],
                capacity=n,
                alpha=1.0,
                jpeg=self.manifest["jpeg"],
                jpeg_quality=self.manifest["jpeg_quality"],
            )
            for traj, _ in self._pending:
                buf.add(traj)
            buf.save(tmp / REPLAY)
            self._write_side(tmp, [f for _, f in self._pending])
            if collector_state is not None:
                import torch

                with open(tmp / COLLECTOR, "wb") as f:
                    torch.save(collector_state, f)
                    f.flush()
                    os.fsync(f.fileno())
            files = _files_of(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self.manifest["chunks"].append(
                {
                    "name": name,
                    "transitions": int(sum(t.length for t, _ in self._pending)),
                    "trajectories": len(self._pending),
                    "files": files,
                }
            )
            created = final
        if manifest_updates:
            _deep_update(self.manifest, manifest_updates)
        write_manifest(self.path, self.manifest)
        self._pending = []
        return created

    @staticmethod
    def _write_side(d: Path, flags: Sequence[EpisodeFlags]) -> None:
        for k, dtype in SIDE_COLUMNS.items():
            arr = np.asarray([getattr(f, k) for f in flags], dtype=dtype)
            with open(d / f"episodes.{k}.npy", "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())

    def finalize(self, manifest_updates: dict | None = None, *, merge: bool = True) -> Dataset:
        """Commit what is pending, merge all chunks into one (memory-mappable), mark complete."""
        self.commit()
        if merge and len(self.manifest["chunks"]) > 1:
            self._merge()
        updates = {"complete": True, **(manifest_updates or {})}
        _deep_update(self.manifest, updates)
        self.manifest["created_by"]["finished_at"] = _now()
        write_manifest(self.path, self.manifest)
        return Dataset(self.path)

    def _merge(self) -> None:
        chunks = self.manifest["chunks"]
        dirs = [self.path / CHUNKS / c["name"] for c in chunks]
        name = f"chunk-{len(chunks):06d}"
        tmp = self.path / CHUNKS / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        sources = [_load_snapshot(d / REPLAY) for d in dirs]
        merge_snapshots(sources, tmp / REPLAY, alpha=1.0)
        del sources
        for k in SIDE_COLUMNS:
            arr = np.concatenate([np.load(d / f"episodes.{k}.npy") for d in dirs])
            np.save(tmp / f"episodes.{k}.npy", arr, allow_pickle=False)
            _fsync_file(tmp / f"episodes.{k}.npy")
        if (dirs[-1] / COLLECTOR).exists():
            shutil.copy2(dirs[-1] / COLLECTOR, tmp / COLLECTOR)
        files = _files_of(tmp)
        os.replace(tmp, self.path / CHUNKS / name)
        self.manifest["chunks"] = [
            {
                "name": name,
                "transitions": sum(int(c["transitions"]) for c in chunks),
                "trajectories": sum(int(c["trajectories"]) for c in chunks),
                "files": files,
            }
        ]
        write_manifest(self.path, self.manifest)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def _deep_update(base: dict, updates: dict) -> None:
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def copy_snapshot_as_dataset(
    replay_dir: Path,
    out: Path,
    *,
    game: str,
    protocol: dict,
    behaviour_policy: dict,
    tool: str,
    source: dict,
    notes: Sequence[str] = (),
) -> Dataset:
    """A dataset from a ReplayBuffer snapshot directory (``xtra data from-run``): the snapshot is
    renumbered and copied (streamed); life-loss / game-over flags are unknown (-1)."""
    meta, arrays = _load_snapshot(replay_dir)
    writer = DatasetWriter.create(
        out,
        game=game,
        legal_actions=meta["action_ids"],
        frame_shape=meta["frame_shape"],
        frame_stack=meta["frame_stack"],
        protocol=protocol,
        behaviour_policy=behaviour_policy,
        tool=tool,
        source=source,
        notes=notes,
        jpeg=meta["jpeg"],
        jpeg_quality=meta["jpeg_quality"],
    )
    name = "chunk-000000"
    tmp = out / CHUNKS / f".{name}.tmp"
    tmp.mkdir()
    merge_snapshots([(meta, arrays)], tmp / REPLAY, alpha=float(meta["alpha"]))
    n_traj = len(arrays["trajectories.length"])
    n_trans = len(arrays["transitions.action"])
    DatasetWriter._write_side(tmp, [EpisodeFlags(-1, -1, -1)] * n_traj)
    files = _files_of(tmp)
    os.replace(tmp, out / CHUNKS / name)
    writer.manifest["chunks"].append(
        {"name": name, "transitions": n_trans, "trajectories": n_traj, "files": files}
    )
    return writer.finalize({"steps": {"transitions": n_trans}})
