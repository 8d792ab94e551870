"""Writing datasets: append-only, atomic per chunk, merged into one chunk at the end.

Finished trajectories are buffered, written as a new chunk directory under a temporary name,
renamed, and only then listed in ``dataset.json`` (written atomically). A chunk directory that
the manifest does not list is debris of an interrupted write and is never read (a resumed writer
removes it). :meth:`DatasetWriter.finalize` merges the chunks into one (streamed, so frames never
need to fit in memory) so that :meth:`Dataset.as_source` can memory-map the frames. The format
is :mod:`xtra.data.dataset_format`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xtra import __version__
from xtra.data.dataset import Dataset
from xtra.data.dataset_format import (
    CHUNKS,
    COLLECTOR,
    MANIFEST,
    REPLAY,
    SIDE_COLUMNS,
    EpisodeFlags,
    chunk_checksums,
    chunk_entry,
    chunk_name,
    flag_columns,
    load_snapshot,
    new_manifest,
    read_manifest,
    read_side_column,
    write_manifest,
    write_side_columns,
)
from xtra.data.replay import ReplayBuffer
from xtra.data.snapshot import merge_snapshots
from xtra.data.trajectory import Trajectory
from xtra.errors import DatasetError


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
        """Start an empty dataset at ``path`` (new, or an empty directory)."""
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
        manifest = new_manifest(
            game=game,
            legal_actions=legal_actions,
            frame_shape=frame_shape,
            frame_stack=frame_stack,
            jpeg=jpeg,
            jpeg_quality=jpeg_quality,
            protocol=protocol,
            behaviour_policy=behaviour_policy,
            seeds=seeds or {},
            source=source or {},
            notes=notes,
            created_by={"tool": tool, "xtra_version": __version__, "created_at": _now()},
        )
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
        """Transitions committed and pending."""
        committed = sum(int(c["transitions"]) for c in self.manifest["chunks"])
        return committed + sum(t.length for t, _ in self._pending)

    @property
    def pending_transitions(self) -> int:
        return sum(t.length for t, _ in self._pending)

    def last_collector_state(self) -> Path | None:
        """The collector state file of the last committed chunk, if it has one."""
        if not self.manifest["chunks"]:
            return None
        f = self.path / CHUNKS / self.manifest["chunks"][-1]["name"] / COLLECTOR
        return f if f.exists() else None

    def add(
        self, trajectory: Trajectory, *, game_over: int = -1, life_loss: int = -1, game_id: int = -1
    ) -> None:
        """Buffer a finished trajectory with its side flags (-1: unknown) until :meth:`commit`."""
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
        name = chunk_name(len(self.manifest["chunks"]))
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
            write_side_columns(tmp, flag_columns([f for _, f in self._pending]))
            if collector_state is not None:
                import torch

                with open(tmp / COLLECTOR, "wb") as f:
                    torch.save(collector_state, f)
                    f.flush()
                    os.fsync(f.fileno())
            files = chunk_checksums(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self.manifest["chunks"].append(
                chunk_entry(
                    name,
                    transitions=int(sum(t.length for t, _ in self._pending)),
                    trajectories=len(self._pending),
                    files=files,
                )
            )
            created = final
        if manifest_updates:
            _deep_update(self.manifest, manifest_updates)
        write_manifest(self.path, self.manifest)
        self._pending = []
        return created

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
        name = chunk_name(len(chunks))
        tmp = self.path / CHUNKS / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        sources = [load_snapshot(d / REPLAY) for d in dirs]
        merge_snapshots(sources, tmp / REPLAY, alpha=1.0)
        del sources
        write_side_columns(
            tmp, {k: np.concatenate([read_side_column(d, k) for d in dirs]) for k in SIDE_COLUMNS}
        )
        if (dirs[-1] / COLLECTOR).exists():
            shutil.copy2(dirs[-1] / COLLECTOR, tmp / COLLECTOR)
        files = chunk_checksums(tmp)
        os.replace(tmp, self.path / CHUNKS / name)
        self.manifest["chunks"] = [
            chunk_entry(
                name,
                transitions=sum(int(c["transitions"]) for c in chunks),
                trajectories=sum(int(c["trajectories"]) for c in chunks),
                files=files,
            )
        ]
        write_manifest(self.path, self.manifest)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


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
    meta, arrays = load_snapshot(replay_dir)
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
    name = chunk_name(0)
    tmp = out / CHUNKS / f".{name}.tmp"
    tmp.mkdir()
    merge_snapshots([(meta, arrays)], tmp / REPLAY, alpha=float(meta["alpha"]))
    n_traj = len(arrays["trajectories.length"])
    n_trans = len(arrays["transitions.action"])
    write_side_columns(tmp, flag_columns([EpisodeFlags(-1, -1, -1)] * n_traj))
    files = chunk_checksums(tmp)
    os.replace(tmp, out / CHUNKS / name)
    writer.manifest["chunks"].append(
        chunk_entry(name, transitions=n_trans, trajectories=n_traj, files=files)
    )
    return writer.finalize({"steps": {"transitions": n_trans}})


def _deep_update(base: dict, updates: dict) -> None:
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
