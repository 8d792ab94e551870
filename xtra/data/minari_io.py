"""Minari import and export (``xtra data import-minari`` / ``export-minari``; issue #5).

Import maps a Minari dataset of a game onto our protocol frames and action sets:

* observations ``[T+1, ...]``: used as they are when they already are our frames (``[C, H, W]``
  or ``[H, W, C]`` of the protocol shape); otherwise (e.g. ALE's 210x160 RGB) resized to
  ``obs_size x obs_size`` with ``cv2.INTER_AREA`` (grayscale if the protocol is) — the manifest
  says so in ``notes``. The first frame is repeated to fill the initial stack (EZ's reset);
* actions: a ``Discrete(A)`` space is taken as indices into the game's minimal (legal) action set
  (ALE v5's default order, which is ours); ``Discrete(18)`` as ALE ids, mapped to the legal index
  (an illegal one is a DatasetError);
* rewards: raw from Minari, clipped per the protocol; episodes split per life where the infos
  carry ``lives`` (training mode), or ``xtra_life_loss`` (our own export);
* search statistics: absent from foreign data, so uniform visits and root value 0 are stored (as
  for random data) and the manifest says so.

Export writes one Minari episode per game (its lives concatenated, frames ``[T+1, H, W, C]``
uint8, actions = legal indices, raw rewards) with per-step ``xtra_*`` infos (ALE action, clipped
reward, root value, root visits, life loss; index ``t+1`` belongs to action ``t``), lossless
(``jpeg_encoding=False``) in HDF5, so that export -> import gives back the same dataset.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xtra.config import Config, to_dict
from xtra.data.dataset import Dataset
from xtra.data.dataset_writer import DatasetWriter
from xtra.data.trajectory import Trajectory
from xtra.errors import DatasetError


def _minari():
    try:
        import minari
    except ImportError:  # pragma: no cover
        raise DatasetError("Minari is not installed: pip install 'minari[hdf5]'") from None
    return minari


@contextmanager
def _datasets_root(path: str | Path | None):
    if path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _env_game(env_id: str) -> str:
    """ "ALE/Breakout-v5" / "BreakoutNoFrameskip-v4" -> "breakout" (a key, for comparison)."""
    name = (
        env_id.split("/")[-1].split("-v")[0].replace("NoFrameskip", "").replace("Deterministic", "")
    )
    return _key(name)


# --------------------------------------------------------------------------- import


def _frame_converter(obs_shape: tuple[int, ...], frame_shape: tuple[int, int, int]):
    """(function obs [T+1, ...] -> frames [T+1, C, H, W] uint8, resized?)"""
    c, h, w = frame_shape
    if obs_shape == (c, h, w):
        return (lambda x: np.asarray(x, dtype=np.uint8)), False
    if obs_shape == (h, w, c):
        return (
            lambda x: np.ascontiguousarray(np.asarray(x, np.uint8).transpose(0, 3, 1, 2))
        ), False
    if (
        len(obs_shape) in (2, 3)
        and c in (1, 3)
        and (len(obs_shape) == 2 or obs_shape[-1] in (1, 3))
    ):

        def convert(x: np.ndarray) -> np.ndarray:
            out = np.empty((len(x), c, h, w), dtype=np.uint8)
            for i, img in enumerate(np.asarray(x, dtype=np.uint8)):
                if img.ndim == 3 and img.shape[-1] == 1:
                    img = img[..., 0]
                if c == 1 and img.ndim == 3:
                    img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                if c == 3 and img.ndim == 2:
                    img = np.repeat(img[..., None], 3, axis=2)
                out[i] = img.reshape(h, w, c).transpose(2, 0, 1) if c == 3 else img[None]
            return out

        return convert, True
    raise DatasetError(
        f"Minari observations of shape {list(obs_shape)} cannot be mapped to frames {list(frame_shape)}: "
        "expected images (H, W, 3), (H, W) or the protocol's frame shape"
    )


def _open(dataset: str):
    minari = _minari()
    p = Path(dataset)
    try:
        if p.exists():
            data = p / "data" if (p / "data").is_dir() else p
            return minari.MinariDataset(data)
        return minari.load_dataset(dataset)
    except DatasetError:
        raise
    except Exception as e:  # minari raises many kinds for a missing or unreadable dataset
        raise DatasetError(
            f"cannot open Minari dataset {dataset!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]}): "
            "give a local dataset id (see `minari list local`) or its directory"
        ) from None


def import_minari(dataset: str, out: str | Path, *, game: str, cfg: Config) -> Dataset:
    """Import the Minari dataset ``dataset`` (id or directory) of ``game`` into ``out``."""
    from xtra.envs import make_env, resolve_game

    name = resolve_game(game)
    env = make_env(name, cfg.env, num_envs=1, seed=0, mode="train")
    legal, frame_shape = env.legal_actions, env.frame_shape
    env.close()
    s, a = cfg.env.frame_stack, len(legal)
    mds = _open(dataset)
    meta = dict(mds.storage.metadata)
    xtra_game = meta.get("xtra_game")
    if xtra_game is not None and xtra_game != name:
        raise DatasetError(f"Minari dataset {dataset!r} holds {xtra_game}, not {name}")
    env_spec = mds.spec.env_spec if hasattr(mds, "spec") else None
    if xtra_game is None and env_spec is not None:
        if _env_game(env_spec.id) != _key(name.split("/")[-1]):
            raise DatasetError(
                f"Minari dataset {dataset!r} was recorded on {env_spec.id}, not {name}: "
                "pass the matching --game"
            )
    n_space = int(getattr(mds.action_space, "n", -1))
    if n_space == a:
        to_local = None
    elif n_space == 18:
        to_local = np.full(18, -1, dtype=np.int64)
        to_local[legal] = np.arange(a)
    else:
        raise DatasetError(
            f"Minari action space {mds.action_space} fits neither {name}'s {a} legal actions "
            "nor the 18 ALE actions"
        )
    convert, resized = _frame_converter(tuple(mds.observation_space.shape), frame_shape)
    notes = [f"imported from Minari dataset {meta.get('dataset_id', dataset)}"]
    if resized:
        notes.append(
            f"observations {list(mds.observation_space.shape)} resized to {list(frame_shape)} "
            "with cv2.INTER_AREA"
        )
    writer = DatasetWriter.create(
        out,
        game=name,
        legal_actions=legal,
        frame_shape=frame_shape,
        frame_stack=s,
        protocol=to_dict(cfg)["env"],
        behaviour_policy=json.loads(meta.get("xtra_behaviour_policy", "null"))
        or {"kind": "minari", "algorithm": meta.get("algorithm_name")},
        tool="xtra data import-minari",
        source={"minari_dataset": str(meta.get("dataset_id", dataset))},
        notes=notes,
        jpeg=cfg.replay.jpeg,
        jpeg_quality=cfg.replay.jpeg_quality,
    )
    foreign = False
    for e_idx, ep in enumerate(mds.iterate_episodes()):
        infos = ep.infos if isinstance(ep.infos, dict) else {}
        foreign |= "xtra_root_visits" not in infos
        frames = convert(ep.observations)
        acts = np.asarray(ep.actions, dtype=np.int64).reshape(-1)
        t = len(acts)
        if to_local is not None:
            bad = (acts < 0) | (acts >= 18) | (to_local[np.clip(acts, 0, 17)] < 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise DatasetError(
                    f"episode {e_idx} step {i}: ALE action {int(acts[i])} is not a legal action "
                    f"of {name} {list(map(int, legal))}"
                )
            acts = to_local[acts]
        elif t and (acts.min() < 0 or acts.max() >= a):
            raise DatasetError(f"episode {e_idx}: actions outside 0..{a - 1}")
        raw = np.asarray(ep.rewards, dtype=np.float32).reshape(-1)
        clipped = (
            np.asarray(infos["xtra_reward"][1:], np.float32)
            if "xtra_reward" in infos
            else (np.sign(raw) if cfg.env.clip_rewards else raw).astype(np.float32)
        )
        visits = (
            np.asarray(infos["xtra_root_visits"][1:], np.float32)
            if "xtra_root_visits" in infos
            else np.full((t, a), 1.0 / a, np.float32)
        )
        values = (
            np.asarray(infos["xtra_root_value"][1:], np.float32)
            if "xtra_root_value" in infos
            else np.zeros(t, np.float32)
        )
        if "xtra_life_loss" in infos:
            life = np.asarray(infos["xtra_life_loss"][1:], bool)
        elif "lives" in infos and cfg.env.episode_life:
            lives = np.asarray(infos["lives"])
            life = lives[1:] < lives[:-1]
        else:
            life = np.zeros(t, bool)
        ended = bool(np.asarray(ep.terminations)[-1]) if t else False
        game_over_flag = (
            bool(np.asarray(infos["xtra_game_over"])[-1]) if "xtra_game_over" in infos else ended
        )
        game_frames = np.concatenate([np.repeat(frames[:1], s - 1, axis=0), frames])
        cuts = [i + 1 for i in np.flatnonzero(life[:-1])] if t else []
        bounds = [0, *cuts, t]
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            last = k == len(bounds) - 2
            term = bool(life[hi - 1]) or (last and ended)
            writer.add(
                Trajectory(
                    frames=game_frames[lo : hi + s],
                    actions=acts[lo:hi],
                    ale_actions=np.asarray(legal)[acts[lo:hi]],
                    rewards=clipped[lo:hi],
                    raw_rewards=raw[lo:hi],
                    root_visits=visits[lo:hi],
                    root_values=values[lo:hi],
                    terminated=term,
                ),
                game_over=int(last and game_over_flag),
                life_loss=int(bool(life[hi - 1])),
                game_id=e_idx,
            )
        if writer.pending_transitions >= 20_000:
            writer.commit()
    if foreign:
        writer.manifest["notes"].append(
            "no search statistics in the source: uniform root visits and root value 0 stored"
        )
    return writer.finalize({"steps": {"transitions": writer.num_transitions}})


# --------------------------------------------------------------------------- export


def _games(ds: Dataset) -> list[list[tuple[Trajectory, Any]]]:
    """Trajectories grouped into games when they chain exactly (flags known, each life's initial
    stack = the previous life's last frames, the first = copies of the reset frame); otherwise
    one group per trajectory."""
    groups: dict[int, list] = {}
    singles: list[list] = []
    s = ds.frame_stack
    for traj, flags in ds.trajectories():
        if flags.game_id < 0:
            singles.append([(traj, flags)])
        else:
            groups.setdefault(flags.game_id, []).append((traj, flags))
    out: list[list] = []
    for g in groups.values():
        ok = all(np.array_equal(g[0][0].frames[i], g[0][0].frames[s - 1]) for i in range(s - 1))
        for (prev, pf), (cur, _) in zip(g[:-1], g[1:]):
            ok &= pf.life_loss == 1 and np.array_equal(prev.frames[-s:], cur.frames[:s])
        out += [g] if ok else [[x] for x in g]
    return out + singles


def _cat(game: list, name: str) -> np.ndarray:
    return np.concatenate([getattr(t, name) for t, _ in game])


def export_minari(path: str | Path, dataset_id: str, *, data_path: str | Path | None = None) -> str:
    """Write the dataset at ``path`` as the Minari dataset ``dataset_id``; returns the id."""
    import gymnasium as gym

    minari = _minari()
    ds = Dataset(path)
    ds.check()
    c, h, w = ds.frame_shape
    s, a = ds.frame_stack, len(ds.legal_actions)
    buffers = []
    lossy = 0
    for e_idx, game in enumerate(_games(ds)):
        first = game[0][0]
        if not all(np.array_equal(first.frames[i], first.frames[s - 1]) for i in range(s - 1)):
            lossy += 1
        frames = np.concatenate([first.frames[s - 1 :]] + [t.frames[s:] for t, _ in game[1:]])
        t_len = sum(t.length for t, _ in game)
        life = np.zeros(t_len + 1, bool)
        ends = np.cumsum([t.length for t, _ in game])
        for (traj, f), end in zip(game, ends):
            life[end] = f.life_loss == 1 or (
                f.life_loss < 0 and traj.terminated and f.game_over != 1
            )
        last_traj, last_flags = game[-1]
        terminated = last_traj.terminated and not life[-1]
        pad = lambda x: np.concatenate([np.zeros((1, *x.shape[1:]), x.dtype), x])  # noqa: E731
        buffers.append(
            minari.data_collector.EpisodeBuffer(
                id=e_idx,
                observations=np.ascontiguousarray(frames.transpose(0, 2, 3, 1)),
                actions=_cat(game, "actions").astype(np.int64),
                rewards=_cat(game, "raw_rewards").astype(np.float64),
                terminations=np.r_[np.zeros(t_len - 1, bool), terminated],
                truncations=np.r_[np.zeros(t_len - 1, bool), not terminated],
                infos={
                    "xtra_ale_action": pad(_cat(game, "ale_actions").astype(np.int64)),
                    "xtra_reward": pad(_cat(game, "rewards").astype(np.float32)),
                    "xtra_root_value": pad(_cat(game, "root_values").astype(np.float32)),
                    "xtra_root_visits": pad(_cat(game, "root_visits").astype(np.float32)),
                    "xtra_life_loss": life,
                    "xtra_game_over": np.r_[np.zeros(t_len, bool), last_flags.game_over == 1],
                },
            )
        )
    kwargs: dict[str, Any] = dict(
        env=None,
        observation_space=gym.spaces.Box(0, 255, (h, w, c), np.uint8),
        action_space=gym.spaces.Discrete(a),
        algorithm_name=str((ds.manifest.get("behaviour_policy") or {}).get("kind")),
        description=f"xtra dataset of {ds.game} (frames at the xtra protocol, legal-index actions)",
        data_format="hdf5",
    )
    if "jpeg_encoding" in inspect.signature(minari.create_dataset_from_buffers).parameters:
        kwargs["jpeg_encoding"] = False  # lossless
    with _datasets_root(data_path), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # minari's reminders about optional fields
        try:
            mds = minari.create_dataset_from_buffers(dataset_id, buffers, **kwargs)
        except ValueError as e:
            raise DatasetError(f"Minari refused {dataset_id!r}: {str(e).splitlines()[0]}") from None
        mds.storage.update_metadata(
            {
                "xtra_game": ds.game,
                "xtra_behaviour_policy": json.dumps(ds.manifest.get("behaviour_policy")),
                "xtra_lossy_initial_stacks": lossy,
            }
        )
    return dataset_id
