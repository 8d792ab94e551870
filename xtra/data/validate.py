"""Dataset validation: every problem of a dataset directory, one line each (``xtra data validate``).

Checks, per listed chunk: files present, listed and matching their SHA-256; the snapshot's meta
against the manifest; every array's presence, dtype and shape (:mod:`xtra.data.snapshot`) and
side column (:mod:`xtra.data.dataset_format`); row counts; trajectories tiling the transition
and frame rows; consistent indices; actions in the game's legal set; finite values; clipped
rewards in [-1, 1]; non-negative visits; JPEG offsets inside the byte pool; sound flags. Later
checks run only when the earlier ones pass (they would read garbage otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtra.atomic import sha256_file
from xtra.data.dataset_format import (
    CHUNKS,
    REPLAY,
    SIDE_COLUMNS,
    error_summary,
    load_snapshot,
    read_manifest,
    read_side_column,
    side_column_file,
)
from xtra.data.snapshot import FORMAT_VERSION as SNAPSHOT_FORMAT_VERSION
from xtra.data.snapshot import Columns, snapshot_arrays
from xtra.errors import DatasetError, XtraError


def validate_dataset(path: str | Path, *, checksums: bool = True) -> list[str]:
    """Every problem of the dataset at ``path``, one line each (empty: sound). Never raises for
    bad data; ``checksums=False`` skips hashing every byte."""
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
    """Problems of the chunk the manifest entry ``c`` lists: its files, then its content."""
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
        meta, arrays = load_snapshot(d / REPLAY)
    except DatasetError as e:
        return problems + [str(e)]
    return problems + _structure_problems(meta, arrays, d, c, m, legal_set)


def _structure_problems(
    meta: dict, arrays: dict[str, np.ndarray], d: Path, c: dict, m: dict, legal_set: set[int]
) -> list[str]:
    """Problems of one chunk's snapshot and side columns, checked in stages."""
    expected = snapshot_arrays(
        frame_shape=m["frame_shape"],
        num_actions=len(m["legal_actions"]),
        jpeg=bool(meta.get("jpeg")),
    )
    problems = _meta_problems(meta, m)
    column_problems = _column_problems(arrays, expected)
    flags, flag_problems = _read_flags(d)
    problems += column_problems + flag_problems
    if column_problems or flag_problems:
        return problems
    problems += _row_count_problems(arrays, expected, flags, c)
    if problems:
        return problems
    problems += _tiling_problems(meta, arrays, int(m["frame_stack"]))
    if problems:
        return problems
    return (
        _index_problems(meta, arrays)
        + _action_problems(arrays, m, legal_set)
        + _value_problems(meta, arrays, m)
        + _flag_problems(arrays, flags)
    )


def _meta_problems(meta: dict, m: dict) -> list[str]:
    """The snapshot's format version, and its shapes and settings against the manifest's."""
    problems = []
    if meta.get("format_version") != SNAPSHOT_FORMAT_VERSION:
        problems.append(
            f"replay snapshot format {meta.get('format_version')} is not {SNAPSHOT_FORMAT_VERSION}"
        )
    for key, want in (
        ("frame_shape", list(m["frame_shape"])),
        ("frame_stack", int(m["frame_stack"])),
        ("action_ids", list(m["legal_actions"])),
        ("jpeg", bool(m.get("jpeg", False))),
    ):
        if meta.get(key) != want:
            problems.append(f"replay meta {key}={meta.get(key)} but dataset.json says {want}")
    return problems


def _column_problems(arrays: dict[str, np.ndarray], expected: Columns) -> list[str]:
    """Missing arrays, and arrays of the wrong dtype or row shape."""
    problems = []
    for name, (shape, dtype) in expected.items():
        arr = arrays.get(name)
        if arr is None:
            problems.append(f"column {name} is missing")
        elif arr.dtype != np.dtype(dtype) or tuple(arr.shape[1:]) != shape:
            problems.append(
                f"column {name} is {list(arr.shape)} {arr.dtype}, expected [*, "
                f"{', '.join(map(str, shape))}] {np.dtype(dtype)}"
            )
    return problems


def _read_flags(d: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The side columns of chunk ``d`` that can be read, and the problems of the others."""
    flags: dict[str, np.ndarray] = {}
    problems = []
    for k, dtype in SIDE_COLUMNS.items():
        try:
            flags[k] = read_side_column(d, k)
        except (OSError, ValueError) as e:
            problems.append(
                f"side column {side_column_file(k)} cannot be read ({error_summary(e)})"
            )
            continue
        if flags[k].dtype != np.dtype(dtype) or flags[k].ndim != 1:
            problems.append(
                f"side column {side_column_file(k)} is {flags[k].dtype}{list(flags[k].shape)}"
            )
    return flags, problems


def _row_count_problems(
    arrays: dict[str, np.ndarray], expected: Columns, flags: dict[str, np.ndarray], c: dict
) -> list[str]:
    """One row per transition / trajectory in every array, and the counts the manifest lists."""
    problems = []
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
            problems.append(
                f"side column {side_column_file(k)} has {len(v)} rows, expected {n_traj}"
            )
    if n_trans != int(c.get("transitions", -1)) or n_traj != int(c.get("trajectories", -1)):
        problems.append(
            f"holds {n_trans} transitions / {n_traj} trajectories, dataset.json says "
            f"{c.get('transitions')} / {c.get('trajectories')}"
        )
    return problems


def _tiling_problems(meta: dict, arrays: dict[str, np.ndarray], s: int) -> list[str]:
    """Trajectories (``T`` transitions and ``S + T`` frames each) tile the rows, in order."""
    problems = []
    length = np.asarray(arrays["trajectories.length"])
    n_trans, n_traj = len(arrays["transitions.action"]), len(length)
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
    return problems


def _index_problems(meta: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """Each transition names its trajectory and position ``t`` correctly."""
    length = np.asarray(arrays["trajectories.length"])
    n_trans, n_traj = len(arrays["transitions.action"]), len(length)
    exp_trans = np.concatenate([[0], np.cumsum(length)[:-1]]) if n_traj else length
    traj = np.asarray(arrays["transitions.traj"]) - meta["trajectories_first"]
    pos = np.asarray(arrays["transitions.pos"], dtype=np.int64)
    exp_traj = np.repeat(np.arange(n_traj), length)
    exp_pos = np.arange(n_trans) - np.repeat(exp_trans, length)
    if not (np.array_equal(traj, exp_traj) and np.array_equal(pos, exp_pos)):
        return ["transition trajectory ids / positions are inconsistent"]
    return []


def _action_problems(arrays: dict[str, np.ndarray], m: dict, legal_set: set[int]) -> list[str]:
    """Local actions in ``0..A-1``, ALE actions in the game's legal set and matching them."""
    problems = []
    a = len(m["legal_actions"])
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
    return problems


def _value_problems(meta: dict, arrays: dict[str, np.ndarray], m: dict) -> list[str]:
    """Finite rewards and search statistics, clipped rewards in [-1, 1] when the protocol clips,
    non-negative visits, JPEG offsets inside the byte pool."""
    problems = []
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
    return problems


def _flag_problems(arrays: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> list[str]:
    """Flags in {-1, 0, 1}; a known life loss ends a terminated trajectory. (A game over need not:
    a game cut at the step cap is over without termination.)"""
    problems = []
    go, ll = flags["game_over"], flags["life_loss"]
    if np.any((go < -1) | (go > 1)) or np.any((ll < -1) | (ll > 1)):
        problems.append("side flags must be -1, 0 or 1")
    term = np.asarray(arrays["trajectories.terminated"])
    known = (go >= 0) & (ll >= 0)
    if np.any(known & (ll == 1) & ~term):
        problems.append("a trajectory ends with a life loss but is not marked terminated")
    return problems
