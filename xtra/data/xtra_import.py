"""Import XTRA / EfficientZero replay buffers in the on-disk layout of spec B4.1 (``import-xtra``).

Layout read (``src/core/replay_buffer.py:89-144`` of XTRA)::

    SRC/<shard>/prior.npy          per-transition priorities (ignored: reset to 1, as XTRA)
    SRC/<shard>/game_look_up.npy   [n, 2] (block id, position) of every sampleable transition
    SRC/<shard>/utils.npy          [base_idx, n_blocks]
    SRC/<shard>/<block>/actions.npy  [L] minimal-set action indices
                        obs.npy      object array of JPEG byte strings: 4 + L (+ pad) frames
                        reward.npy   [L (+ pad)] clipped rewards
                        visits.npy   [L (+ pad), A] visit distributions
                        root.npy     [L (+ pad)] root values

``SRC`` is one ``replay/`` directory (shards ``0..7``; XTRA hard-codes 8, we read the integer
directories present) or a directory of ``<run>_<N>/replay/`` runs, read in the order of ``N``.

Reassembly (spec A2). EfficientZero cuts a trajectory into 400-step blocks; every block but the
last of a trajectory is *padded* with the next block's first frames, rewards and root values, and
the next block starts from the block's last 4 frames. A padded block is therefore chained to the
block whose first 4 frames (JPEG bytes) equal its frames ``L .. L+3`` and whose frames ``4 .. 8``
equal its pad; the pad is dropped and the chain becomes one :class:`Trajectory`. Per block, only
the first ``L`` entries are kept, ``L`` trimmed to the positions ``game_look_up`` lists.

Caveats, recorded in the manifest's notes:

* raw rewards are not stored: ``raw_rewards`` = the clipped rewards (scores are unknown);
* an unpadded last block means the trajectory ended (life loss or game over in EZ's training env,
  or the end of training: the buffers do not say which): it is stored as terminated, with
  life-loss / game-over flags unknown (-1);
* frames were JPEG-compressed by EfficientZero: decoded once, then stored losslessly (or as JPEG
  again with ``replay.jpeg``);
* a padded block whose successor is missing (e.g. in another shard), or a block trimmed by
  ``game_look_up``, ends its trajectory as cut (not terminated);
* ``obs.npy`` is a pickled object array: import only buffers you trust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtra.config import Config, to_dict
from xtra.data.dataset import Dataset
from xtra.data.dataset_writer import DatasetWriter
from xtra.data.frames import JpegCodec
from xtra.data.trajectory import Trajectory
from xtra.errors import DatasetError, XtraError

STACK = 4  # EfficientZero's frame stack: every block starts with 4 frames
PAD_FRAMES = 5  # frames padded onto a block (A2)


@dataclass
class _Block:
    shard: Path
    name: str
    obs: np.ndarray  # object array of JPEG bytes
    actions: np.ndarray
    rewards: np.ndarray
    visits: np.ndarray
    roots: np.ndarray
    length: int  # L after trimming

    @property
    def padded(self) -> bool:
        return len(self.obs) > STACK + len(self.actions)

    @property
    def trimmed(self) -> bool:
        return self.length < len(self.actions)

    def head_key(self) -> bytes:
        return b"\0".join(bytes(x) for x in self.obs[:STACK])

    def tail_key(self) -> bytes:
        return b"\0".join(bytes(x) for x in self.obs[self.length : self.length + STACK])


def _shards(src: Path) -> list[Path]:
    """Shard directories in reading order: ``src/<int>/`` or ``src/<run>_<N>/replay/<int>/``."""

    def ints(d: Path) -> list[Path]:
        return sorted(
            (p for p in d.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
        )

    if (src / "replay").is_dir():
        src = src / "replay"
    if ints(src) and (ints(src)[0] / "game_look_up.npy").exists():
        return ints(src)
    runs = [p for p in src.iterdir() if p.is_dir() and (p / "replay").is_dir()]
    if not runs:
        raise DatasetError(
            f"{src} is not an XTRA/EfficientZero replay directory: expected shards 0..7 with "
            "game_look_up.npy, or <run>_<N>/replay/ directories"
        )

    def order(p: Path) -> int:
        m = re.search(r"_(\d+)$", p.name)
        return int(m.group(1)) if m else 0

    return [s for r in sorted(runs, key=order) for s in ints(r / "replay")]


def _load(path: Path, pickled: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=pickled)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(
            f"{path} cannot be read ({type(e).__name__}): the buffer is damaged"
        ) from None


def _read_shard(shard: Path, num_actions: int) -> list[_Block]:
    look = _load(shard / "game_look_up.npy").reshape(-1, 2).astype(np.int64)
    utils = _load(shard / "utils.npy").reshape(-1)
    base, n_blocks = int(utils[0]), int(utils[1])
    names = sorted((p.name for p in shard.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
    if len(names) < n_blocks:
        raise DatasetError(f"{shard}: utils.npy says {n_blocks} blocks, found {len(names)}")
    ids = look[:, 0] - base if len(look) and look[:, 0].min() >= base else look[:, 0]
    blocks = []
    for i, name in enumerate(names[:n_blocks]):
        d = shard / name
        actions = _load(d / "actions.npy").astype(np.int64).reshape(-1)
        rows = look[ids == i, 1]
        length = min(len(actions), int(rows.max()) + 1 if rows.size else 0)
        if length == 0:
            continue
        b = _Block(
            shard=shard,
            name=name,
            obs=_load(d / "obs.npy", pickled=True).reshape(-1),
            actions=actions,
            rewards=_load(d / "reward.npy").astype(np.float32).reshape(-1),
            visits=_load(d / "visits.npy").astype(np.float32),
            roots=_load(d / "root.npy").astype(np.float32).reshape(-1),
            length=length,
        )
        where = f"{shard.name}/{name}"
        if len(b.obs) < STACK + length or len(b.rewards) < length or len(b.roots) < length:
            raise DatasetError(
                f"block {where} holds fewer frames/rewards/values than its {length} actions"
            )
        if b.visits.ndim != 2 or b.visits.shape[1] != num_actions or len(b.visits) < length:
            raise DatasetError(
                f"block {where} visits.npy is {list(b.visits.shape)}, expected [>= {length}, {num_actions}]"
            )
        if actions[:length].min() < 0 or actions[:length].max() >= num_actions:
            raise DatasetError(
                f"block {where} has actions outside 0..{num_actions - 1}: is it of another game?"
            )
        blocks.append(b)
    return blocks


def _chains(blocks: list[_Block]) -> list[tuple[list[_Block], bool]]:
    """Blocks linked into trajectories: (blocks, terminated)."""
    by_head: dict[bytes, list[int]] = {}
    for i, b in enumerate(blocks):
        by_head.setdefault(b.head_key(), []).append(i)
    nxt: dict[int, int] = {}
    has_prev: set[int] = set()
    for i, b in enumerate(blocks):
        if not b.padded or b.trimmed:
            continue
        pad = [bytes(x) for x in b.obs[STACK + b.length : STACK + b.length + PAD_FRAMES]]
        for j in by_head.get(b.tail_key(), []):
            c = blocks[j]
            if (
                j != i
                and j not in has_prev
                and [bytes(x) for x in c.obs[STACK : STACK + len(pad)]] == pad
            ):
                nxt[i], _ = j, has_prev.add(j)
                break
    out = []
    for i in range(len(blocks)):
        if i in has_prev:
            continue
        chain = [i]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        last = blocks[chain[-1]]
        out.append(([blocks[k] for k in chain], not last.padded and not last.trimmed))
    return out


def import_xtra_replay(src: str | Path, out: str | Path, *, game: str, cfg: Config) -> Dataset:
    """Import the XTRA/EfficientZero buffers at ``src`` (of ``game``) into the dataset ``out``."""
    from xtra.envs import resolve_game
    from xtra.games import get_game

    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"no replay directory at {src}")
    name = resolve_game(game)
    try:
        legal = np.asarray(get_game(name).legal_actions, dtype=np.int64)
    except XtraError as e:
        raise DatasetError(str(e)) from None
    a = len(legal)
    c = 1 if cfg.env.grayscale else 3
    frame_shape = (c, cfg.env.obs_size, cfg.env.obs_size)
    codec = JpegCodec(95)
    shards = _shards(src)
    writer = None
    for shard in shards:
        blocks = _read_shard(shard, a)
        for chain, terminated in _chains(blocks):
            enc = list(chain[0].obs[:STACK]) + [
                x for b in chain for x in b.obs[STACK : STACK + b.length]
            ]
            try:
                frames = np.stack(
                    [codec.decode(np.frombuffer(bytes(x), np.uint8), frame_shape) for x in enc]
                )
            except Exception:
                raise DatasetError(
                    f"{shard}: frames of block {chain[0].name} are not {list(frame_shape)} JPEG "
                    "images: set env.obs_size / env.grayscale to the buffer's protocol"
                ) from None
            acts = np.concatenate([b.actions[: b.length] for b in chain])
            rew = np.concatenate([b.rewards[: b.length] for b in chain])
            if writer is None:
                writer = DatasetWriter.create(
                    out,
                    game=name,
                    legal_actions=legal,
                    frame_shape=frame_shape,
                    frame_stack=STACK,
                    protocol=to_dict(cfg)["env"],
                    behaviour_policy={"kind": "efficientzero-replay"},
                    tool="xtra data import-xtra",
                    source={"path": str(src.resolve()), "shards": [str(s) for s in shards]},
                    notes=[
                        "imported from an XTRA/EfficientZero replay (spec B4.1); raw rewards are "
                        "not stored there: raw_rewards = clipped rewards",
                        "trajectory ends: unpadded last block = terminated (life loss or game "
                        "over unknown: flags -1); frames decoded from EfficientZero's JPEGs",
                    ],
                    jpeg=cfg.replay.jpeg,
                    jpeg_quality=cfg.replay.jpeg_quality,
                )
            writer.add(
                Trajectory(
                    frames=frames.astype(np.uint8),
                    actions=acts,
                    ale_actions=legal[acts],
                    rewards=rew,
                    raw_rewards=rew.copy(),
                    root_visits=np.concatenate([b.visits[: b.length] for b in chain]),
                    root_values=np.concatenate([b.roots[: b.length] for b in chain]),
                    terminated=terminated,
                ),
            )
        if writer is not None and writer.pending_transitions >= 20_000:
            writer.commit()
    if writer is None:
        raise DatasetError(f"{src} holds no transitions")
    writer.manifest["seeds"] = {}
    return writer.finalize({"steps": {"transitions": writer.num_transitions}})
