"""Offline datasets opened for reading: one game's trajectories, checksummed, memory-mappable.

A dataset directory (:mod:`xtra.data.dataset_format`, ``docs/datasets.md``) is written by
:mod:`xtra.data.dataset_writer` and checked by :mod:`xtra.data.validate`. Readers get a
:class:`~xtra.data.replay.ReplayBuffer` (frames memory-mapped): the learner samples a dataset
exactly like the online replay (``sample`` -> ``SampledBatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xtra.data.dataset_format import (
    CHUNKS,
    REPLAY,
    SIDE_COLUMNS,
    EpisodeFlags,
    check_game,
    error_summary,
    load_snapshot,
    read_manifest,
    read_side_column,
    side_column_file,
)
from xtra.data.replay import ReplayBuffer
from xtra.data.snapshot import merge_snapshots_in_memory
from xtra.data.trajectory import Trajectory
from xtra.data.validate import validate_dataset
from xtra.errors import DatasetError


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
            sources = [load_snapshot(d / REPLAY) for d in dirs]
            a = float(sources[0][0]["alpha"]) if alpha is None else alpha
            state = merge_snapshots_in_memory(sources, alpha=a)
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
                    out[k].append(read_side_column(d, k))
                except (OSError, ValueError) as e:
                    raise DatasetError(
                        f"{d}/{side_column_file(k)} cannot be read ({error_summary(e)}): "
                        "run `xtra data validate`"
                    ) from None
        return {
            k: np.concatenate(v) if v else np.zeros(0, dtype=SIDE_COLUMNS[k])
            for k, v in out.items()
        }

    def trajectories(self) -> Iterator[tuple[Trajectory, EpisodeFlags]]:
        """Every trajectory with its side flags, in storage order (frames decoded)."""
        for d in self.chunk_dirs():
            buf = ReplayBuffer.load(d / REPLAY, mmap=True)
            flags = {k: read_side_column(d, k) for k in SIDE_COLUMNS}
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
            _, arrays = load_snapshot(d / REPLAY)
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
