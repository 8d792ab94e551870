"""Replay buffer: sampling windows, prioritized sampling, eviction, JPEG, snapshots.

Frames carry their own address: every pixel of channel 0 is the trajectory's tag, channel 1 the
frame's local index in its trajectory, channel 2 the index divided by 256, so a test reads back
exactly which frame the buffer returned.
"""

import itertools

import numpy as np
import pytest

from xtra.config import ReplayConfig
from xtra.data import ReplayBuffer, Trajectory, TrajectoryBuilder, beta_at
from xtra.data.frames import JpegCodec
from xtra.data.snapshot import snapshot_arrays
from xtra.errors import CheckpointError, XtraError

S = 4
SHAPE = (3, 5, 6)
ACTION_IDS = [0, 1, 3, 11, 12]  # legal ALE ids of a made-up game, A = 5
A = len(ACTION_IDS)


def make_traj(tag: int, length: int, *, terminated: bool = True, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed + 1000 * tag)
    f = np.arange(S + length)
    frames = np.empty((S + length, *SHAPE), dtype=np.uint8)
    frames[:, 0] = tag
    frames[:, 1] = (f % 256)[:, None, None]
    frames[:, 2] = (f // 256)[:, None, None]
    actions = rng.integers(0, A, size=length)
    visits = rng.random((length, A)).astype(np.float32)
    return Trajectory(
        frames=frames,
        actions=actions,
        ale_actions=np.asarray(ACTION_IDS)[actions],
        rewards=(tag * 1000 + np.arange(length)).astype(np.float32),
        raw_rewards=(tag * 1000 + np.arange(length) + 0.25).astype(np.float32),
        root_visits=visits / visits.sum(1, keepdims=True),
        root_values=(tag * 1000 + np.arange(length) + 0.5).astype(np.float32),
        terminated=terminated,
    )


def make_buffer(capacity: int = 10_000, alpha: float = 0.6, **kw) -> ReplayBuffer:
    return ReplayBuffer(
        frame_shape=SHAPE,
        frame_stack=S,
        action_ids=ACTION_IDS,
        capacity=capacity,
        alpha=alpha,
        **kw,
    )


def check_batch(buf: ReplayBuffer, trajs: dict[int, Trajectory], batch, k: int, n: int) -> None:
    """Compare every field of a batch with values computed by loops from the trajectories."""
    for b in range(len(batch)):
        tid, t = int(batch.traj_ids[b]), int(batch.positions[b])
        tr = trajs[tid]
        big_t = tr.length
        tag = int(tr.frames[0, 0, 0, 0])
        # obs: frames t..t+S+K-1, the last frame repeated past the end
        for j in range(S + k):
            f = min(t + j, S + big_t - 1)
            frame = batch.obs[b, j]
            assert frame[0].min() == frame[0].max() == tag
            assert int(frame[1, 0, 0]) + 256 * int(frame[2, 0, 0]) == f
        for u in range(k + 1):
            real = t + u < big_t
            assert batch.mask[b, u] == float(real)
            assert batch.root_values[b, u] == (tr.root_values[t + u] if real else 0.0)
            expected_visits = tr.root_visits[t + u] if real else np.zeros(A)
            np.testing.assert_array_equal(batch.root_visits[b, u], expected_visits)
            bp = t + u + int(batch.td_steps[b])
            assert batch.bootstrap_positions[b, u] == bp
            assert batch.bootstrap_valid[b, u] == float(bp < big_t)
            assert batch.bootstrap_root_values[b, u] == (tr.root_values[bp] if bp < big_t else 0.0)
        for j in range(k):
            if t + j < big_t:
                assert batch.actions[b, j] == tr.ale_actions[t + j]
            else:
                assert batch.actions[b, j] in ACTION_IDS
        for j in range(k + n):
            assert batch.rewards[b, j] == (tr.rewards[t + j] if t + j < big_t else 0.0)
        assert batch.terminated[b] == tr.terminated
        assert batch.ages[b] == buf.total_added - batch.indices[b]


def fill(buf: ReplayBuffer, lengths, start_tag: int = 0, terminated=True) -> dict[int, Trajectory]:
    trajs = {}
    for i, length in enumerate(lengths):
        tr = make_traj(
            start_tag + i, length, terminated=terminated if i % 2 == 0 else not terminated
        )
        tid = buf.add(tr)
        trajs[tid] = tr
    return trajs


# --------------------------------------------------------------------------- windows


def test_every_window_matches_its_trajectory():
    buf = make_buffer()
    trajs = fill(buf, [1, 3, 7, 12, 2, 30])  # ends inside the window, shorter than K, etc.
    k, n = 5, 5
    all_idx = np.arange(buf.total_added)
    batch = buf.batch_at(
        all_idx,
        np.ones(len(all_idx)),
        unroll_steps=k,
        td_steps=n,
        auto_td_steps=None,
        rng=np.random.default_rng(0),
    )
    assert batch.obs.shape == (len(all_idx), S + k, *SHAPE) and batch.obs.dtype == np.uint8
    assert batch.actions.shape == (len(all_idx), k)
    assert batch.mask.shape == (len(all_idx), k + 1)
    assert batch.rewards.shape == (len(all_idx), k + n)
    assert batch.root_visits.shape == (len(all_idx), k + 1, A)
    assert np.all(batch.td_steps == n)
    check_batch(buf, trajs, batch, k, n)
    # positions run over every transition of every trajectory, starts and ends included
    got = sorted(zip(batch.traj_ids.tolist(), batch.positions.tolist()))
    assert got == sorted((tid, t) for tid, tr in trajs.items() for t in range(tr.length))


def test_sampled_batches_and_age_rule():
    buf = make_buffer()
    trajs = fill(buf, [40, 25, 60, 10, 33])
    rng = np.random.default_rng(3)
    batch = buf.sample(32, unroll_steps=3, td_steps=4, auto_td_steps=40, rng=rng, beta=0.5)
    check_batch(buf, trajs, batch, 3, 4)
    assert len(set(batch.indices.tolist())) == 32
    expected_td = np.clip(4 - (buf.total_added - batch.indices) // 40, 1, 4)
    np.testing.assert_array_equal(batch.td_steps, expected_td)
    assert batch.td_steps.min() < 4  # the oldest data got a shorter horizon


def test_padding_actions_are_legal_and_random():
    buf = make_buffer()
    trajs = fill(buf, [1] * 50)
    batch = buf.sample(
        50, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=np.random.default_rng(0), beta=1.0
    )
    check_batch(buf, trajs, batch, 5, 5)
    pad = batch.actions[:, 1:]
    assert set(np.unique(pad).tolist()) == set(ACTION_IDS)  # 200 draws cover all 5 ids


def test_stacked_obs_clamps_positions():
    buf = make_buffer()
    tid = buf.add(make_traj(7, 6))
    obs = buf.stacked_obs(np.array([tid] * 4), np.array([0, 2, 6, 50]))
    assert obs.shape == (4, S, *SHAPE)
    local = obs[:, :, 1, 0, 0].astype(int)
    np.testing.assert_array_equal(local[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(local[1], [2, 3, 4, 5])
    np.testing.assert_array_equal(local[2], [6, 7, 8, 9])  # s_T: the last S frames
    np.testing.assert_array_equal(local[3], [6, 7, 8, 9])  # past the end: clamped to s_T


def test_trajectory_round_trip_and_empty_trajectory():
    buf = make_buffer()
    tr = make_traj(3, 9, terminated=False)
    tid = buf.add(tr)
    back = buf.trajectory(tid)
    for name in (
        "frames",
        "actions",
        "ale_actions",
        "rewards",
        "raw_rewards",
        "root_visits",
        "root_values",
    ):
        np.testing.assert_array_equal(getattr(back, name), getattr(tr, name))
    assert back.terminated is False
    assert buf.add(make_traj(4, 0)) is None
    assert len(buf) == 9 and buf.num_trajectories == 1


def test_add_rejects_bad_trajectories():
    buf = make_buffer(capacity=10)
    with pytest.raises(XtraError):
        buf.add(make_traj(1, 11))
    tr = make_traj(1, 5)
    bad = Trajectory(**{**tr.__dict__, "ale_actions": tr.ale_actions + 1})
    with pytest.raises(ValueError):
        buf.add(bad)
    with pytest.raises(ValueError):
        buf.add(Trajectory(**{**tr.__dict__, "frames": tr.frames[1:]}))


def test_builder_produces_the_trajectory():
    b = TrajectoryBuilder(frame_stack=2, frame_shape=(1, 3, 3), num_actions=2)
    b.start(np.zeros((2, 1, 3, 3), np.uint8))
    for t in range(3):
        frame = np.full((1, 3, 3), t + 1, np.uint8)
        b.add(t % 2, [4, 7][t % 2], 1.0, 5.0, frame, np.array([0.25, 0.75]), 0.1 * t)
    np.testing.assert_array_equal(b.stack()[:, 0, 0, 0], [2, 3])
    tr = b.finish(terminated=True)
    assert tr.length == 3 and tr.frame_stack == 2 and tr.terminated
    np.testing.assert_array_equal(tr.frames[:, 0, 0, 0], [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(tr.ale_actions, [4, 7, 4])
    assert tr.root_visits.shape == (3, 2)
    assert not b.started
    b.start(np.zeros((2, 1, 3, 3), np.uint8))
    empty = b.finish(terminated=False)
    assert empty.length == 0 and empty.root_visits.shape == (0, 2)


# --------------------------------------------------------------------------- priorities


def test_new_data_gets_max_priority_and_beta_schedule():
    buf = make_buffer()
    buf.add(make_traj(0, 4))
    np.testing.assert_array_equal(buf.priorities(np.arange(4)), 1.0)
    buf.update_priorities(np.array([1, 2]), np.array([0.5, 7.0]))
    buf.add(make_traj(1, 3))
    np.testing.assert_array_equal(buf.priorities(np.arange(4, 7)), 7.0)
    assert beta_at(0, beta_start=0.4, beta_end=1.0, total_steps=120_000) == pytest.approx(0.4)
    assert beta_at(60_000, beta_start=0.4, beta_end=1.0, total_steps=120_000) == pytest.approx(0.7)
    assert beta_at(200_000, beta_start=0.4, beta_end=1.0, total_steps=120_000) == pytest.approx(1.0)


def test_importance_weights_by_hand():
    buf = make_buffer(alpha=0.5)
    buf.add(make_traj(0, 4))
    p = np.array([1.0, 4.0, 9.0, 16.0])
    buf.update_priorities(np.arange(4), p)
    probs = np.sqrt(p) / np.sqrt(p).sum()  # 1, 2, 3, 4 over 10
    np.testing.assert_allclose(buf.probabilities(np.arange(4)), [0.1, 0.2, 0.3, 0.4])
    idx, w = buf.sample_indices(2, rng=np.random.default_rng(0), beta=0.7)
    raw = (4 * probs[idx]) ** -0.7
    np.testing.assert_allclose(w, raw / raw.max(), rtol=1e-6)
    assert w.max() == 1.0


def test_per_inclusion_frequencies_match_exact_without_replacement():
    alpha, b = 0.7, 3
    buf = make_buffer(alpha=alpha)
    buf.add(make_traj(0, 3))
    buf.add(make_traj(1, 2))
    p = np.array([0.2, 1.0, 3.0, 0.5, 6.0])
    buf.update_priorities(np.arange(5), p)
    w = p**alpha
    inclusion = np.zeros(5)
    for seq in itertools.permutations(range(5), b):  # sequential draws without replacement
        prob, left = 1.0, w.sum()
        for i in seq:
            prob *= w[i] / left
            left -= w[i]
        inclusion[list(seq)] += prob
    rng = np.random.default_rng(5)
    draws = 10000
    counts = np.zeros(5)
    for _ in range(draws):
        idx, _ = buf.sample_indices(b, rng=rng, beta=1.0)
        counts[idx] += 1
    sd = np.sqrt(inclusion * (1 - inclusion) / draws)
    np.testing.assert_array_less(np.abs(counts / draws - inclusion), 4.5 * sd + 1e-3)


def test_update_priorities_changes_the_distribution():
    buf = make_buffer(alpha=1.0)
    buf.add(make_traj(0, 20))
    rng = np.random.default_rng(0)
    buf.update_priorities(np.arange(20), np.r_[np.zeros(10), np.ones(10)])
    for _ in range(50):
        idx, _ = buf.sample_indices(5, rng=rng, beta=1.0)
        assert idx.min() >= 10
    buf.update_priorities(np.arange(20), np.r_[np.full(10, 1e6), np.full(10, 1e-6)])
    hits = sum(int(buf.sample_indices(5, rng=rng, beta=1.0)[0].max() < 10) for _ in range(50))
    assert hits == 50
    with pytest.raises(ValueError):
        buf.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(XtraError):
        buf.sample_indices(21, rng=rng, beta=1.0)


# --------------------------------------------------------------------------- eviction


@pytest.mark.parametrize("jpeg", [False, True])
def test_fifo_eviction_keeps_consistency(jpeg):
    cap = 60
    buf = make_buffer(capacity=cap, jpeg=jpeg)
    rng = np.random.default_rng(0)
    added: dict[int, Trajectory] = {}
    for tag in range(80):
        tr = make_traj(tag, int(rng.integers(1, 25)))
        added[buf.add(tr)] = tr
        assert len(buf) <= cap
        if tag % 7 == 0:  # touch priorities so eviction has something to keep straight
            idx, _ = buf.sample_indices(min(5, len(buf)), rng=rng, beta=1.0)
            buf.update_priorities(idx, rng.random(len(idx)) + 0.1)
    ids = buf.trajectory_ids()
    assert ids[-1] == 79 and ids[0] > 0  # the oldest went first, the newest is kept
    lengths = [added[i].length for i in range(80)]
    # exactly the longest suffix of trajectories that fits
    assert sum(lengths[ids[0] :]) <= cap < sum(lengths[ids[0] - 1 :])
    assert len(buf) == sum(lengths[ids[0] :])
    held = {int(i): added[int(i)] for i in ids}
    for i, tr in held.items():
        back = buf.trajectory(i)
        if jpeg:
            assert np.abs(back.frames.astype(int) - tr.frames).max() <= 8
        else:
            np.testing.assert_array_equal(back.frames, tr.frames)
        np.testing.assert_array_equal(back.root_values, tr.root_values)
    if not jpeg:
        batch = buf.sample(
            len(buf), unroll_steps=4, td_steps=3, auto_td_steps=None, rng=rng, beta=0.5
        )
        check_batch(buf, held, batch, 4, 3)
    with pytest.raises(IndexError):
        buf.trajectory(0)
    # An index sampled before its eviction is ignored by update_priorities.
    buf.update_priorities(np.array([0]), np.array([3.0]))


# --------------------------------------------------------------------------- frames


def smooth_frames(n: int, shape, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    c, h, w = shape
    low = rng.random((n, c, 4, 4)).astype(np.float32) * 255
    out = np.stack(
        [np.stack([cv2.resize(ch, (w, h), interpolation=cv2.INTER_CUBIC) for ch in f]) for f in low]
    )
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(3, 96, 96), (1, 20, 24), (2, 10, 10)])
def test_jpeg_round_trip_is_close(shape):
    frames = smooth_frames(6, shape)
    codec = JpegCodec(95)
    back = np.stack([codec.decode(codec.encode(f), shape) for f in frames])
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames)
    assert err.mean() < 2.0 and err.max() <= 20


@pytest.mark.parametrize("jpeg", [False, True])
def test_buffer_frames_lossless_or_close(jpeg):
    shape = (3, 96, 96)
    frames = smooth_frames(S + 10, shape, seed=1)
    tr = Trajectory(
        frames=frames,
        actions=np.zeros(10, np.int64),
        ale_actions=np.zeros(10, np.int64),
        rewards=np.zeros(10, np.float32),
        raw_rewards=np.zeros(10, np.float32),
        root_visits=np.full((10, 2), 0.5, np.float32),
        root_values=np.zeros(10, np.float32),
        terminated=True,
    )
    buf = ReplayBuffer.from_config(
        ReplayConfig(jpeg=jpeg), frame_shape=shape, frame_stack=S, action_ids=[0, 1]
    )
    buf.add(tr)
    batch = buf.sample(
        10, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=np.random.default_rng(0), beta=1
    )
    for b in range(10):
        t = batch.positions[b]
        expected = frames[np.minimum(np.arange(t, t + S + 5), S + 9)]
        if jpeg:
            assert np.abs(batch.obs[b].astype(int) - expected).mean() < 2.0
        else:
            np.testing.assert_array_equal(batch.obs[b], expected)
    if jpeg:
        assert buf.nbytes < frames.nbytes / 2  # actually compressed


# --------------------------------------------------------------------------- snapshots


def assert_batches_equal(a, b) -> None:
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def used_buffer(jpeg: bool) -> ReplayBuffer:
    buf = make_buffer(capacity=200, jpeg=jpeg)
    rng = np.random.default_rng(1)
    for tag in range(40):  # evicts, so global indices no longer start at 0
        buf.add(make_traj(tag, int(rng.integers(1, 20)), terminated=bool(tag % 2)))
        idx, _ = buf.sample_indices(min(8, len(buf)), rng=rng, beta=1.0)
        buf.update_priorities(idx, rng.random(len(idx)) * 3)
    assert buf.trajectory_ids()[0] > 0
    return buf


@pytest.mark.parametrize("jpeg", [False, True])
def test_state_dict_round_trip_gives_identical_samples(jpeg):
    buf = used_buffer(jpeg)
    other = make_buffer(capacity=200, jpeg=jpeg)
    other.load_state_dict(buf.state_dict())
    kw = dict(unroll_steps=5, td_steps=5, auto_td_steps=50, beta=0.6)
    for seed in range(3):
        a = buf.sample(64, rng=np.random.default_rng(seed), **kw)
        b = other.sample(64, rng=np.random.default_rng(seed), **kw)
        assert_batches_equal(a, b)
    # Both continue identically after new data and priority updates.
    for x in (buf, other):
        x.add(make_traj(99, 17))
        x.update_priorities(np.arange(x.total_added - 5, x.total_added), np.arange(5.0))
    assert_batches_equal(
        buf.sample(64, rng=np.random.default_rng(9), **kw),
        other.sample(64, rng=np.random.default_rng(9), **kw),
    )


@pytest.mark.parametrize("jpeg", [False, True])
def test_state_dict_follows_the_snapshot_format(jpeg):
    """The buffer writes exactly the arrays, dtypes and shapes the snapshot format names."""
    arrays = used_buffer(jpeg).state_dict()["arrays"]
    layout = snapshot_arrays(frame_shape=SHAPE, num_actions=A, jpeg=jpeg)
    assert list(arrays) == list(layout)
    for name, (shape, dtype) in layout.items():
        assert (arrays[name].shape[1:], arrays[name].dtype) == (shape, np.dtype(dtype)), name


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_directory(tmp_path, mmap):
    buf = used_buffer(jpeg=False)
    buf.save(tmp_path / "replay")
    buf.add(make_traj(50, 9))
    snap = buf.save(tmp_path / "replay")  # a second snapshot replaces the first
    assert snap.name == "snapshot-000002"
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == ["LATEST", "snapshot-000002"]
    loaded = ReplayBuffer.load(tmp_path / "replay", mmap=mmap)
    assert isinstance(loaded._frames.rows.arrays["frames"], np.memmap) == mmap
    kw = dict(unroll_steps=5, td_steps=5, auto_td_steps=None, beta=0.4)
    assert_batches_equal(
        buf.sample(32, rng=np.random.default_rng(0), **kw),
        loaded.sample(32, rng=np.random.default_rng(0), **kw),
    )
    # A loaded (memory-mapped) buffer accepts new data and priority updates without touching the file.
    loaded.add(make_traj(51, 120))
    loaded.update_priorities(np.array([loaded.total_added - 1]), np.array([5.0]))
    again = ReplayBuffer.load(tmp_path / "replay")
    assert again.total_added == buf.total_added
    assert_batches_equal(
        buf.sample(32, rng=np.random.default_rng(1), **kw),
        again.sample(32, rng=np.random.default_rng(1), **kw),
    )


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError):
        ReplayBuffer.load(tmp_path / "nothing")
    buf = used_buffer(jpeg=False)
    other = ReplayBuffer(
        frame_shape=SHAPE, frame_stack=S, action_ids=[0, 1], capacity=200, alpha=0.6
    )
    with pytest.raises(CheckpointError):
        other.load_state_dict(buf.state_dict())
    small = make_buffer(capacity=10)
    with pytest.raises(CheckpointError):
        small.load_state_dict(buf.state_dict())


def test_growth_from_small_arrays_keeps_data():
    # Many small additions force several reallocations of every array.
    buf = make_buffer(capacity=100_000)
    trajs = fill(buf, [int(x) for x in np.random.default_rng(0).integers(1, 200, size=60)])
    batch = buf.sample(
        256, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=np.random.default_rng(0), beta=0.4
    )
    check_batch(buf, trajs, batch, 5, 5)


# --------------------------------------------------------------------------- self-play pieces


def _pieces(traj: Trajectory, length: int, overlap: int) -> list[tuple[Trajectory, int | None]]:
    """Feed ``traj`` step by step through a builder that splits as SelfPlay does."""
    b = TrajectoryBuilder(frame_stack=S, frame_shape=SHAPE, num_actions=A)
    b.start(traj.frames[:S])
    out = []
    for t in range(traj.length):
        b.add(int(traj.actions[t]), int(traj.ale_actions[t]), float(traj.rewards[t]),
              float(traj.raw_rewards[t]), traj.frames[S + t], traj.root_visits[t],
              float(traj.root_values[t]))  # fmt: skip
        if t < traj.length - 1 and len(b) >= length + overlap:
            out.append((b.split(length, overlap), length))
    out.append((b.finish(terminated=traj.terminated), None))
    return out


@pytest.mark.parametrize("terminated", [True, False])
def test_pieces_give_every_position_the_targets_of_the_whole_trajectory(terminated):
    k, n = 3, 4
    whole = make_traj(2, 47, terminated=terminated)
    pieces = _pieces(whole, length=10, overlap=k + n)
    # Splits after 17, 27 and 37 steps cut at 10, 20, 30; the last piece ends with the game.
    assert [len(p) for p, _ in pieces] == [17, 17, 17, 17]
    ref, buf = make_buffer(), make_buffer()
    ref.add(whole)
    offsets = []
    for i, (piece, limit) in enumerate(pieces):
        assert piece.terminated == (terminated and limit is None)
        buf.add(piece, sample_limit=limit)
        offsets += [10 * i + p for p in range(len(piece))]
    offsets = np.array(offsets)
    sampleable = np.flatnonzero(buf.priorities(np.arange(len(buf))) > 0)
    # Every position of the whole trajectory is sampleable exactly once.
    np.testing.assert_array_equal(np.sort(offsets[sampleable]), np.arange(whole.length))
    kw = dict(unroll_steps=k, td_steps=n, auto_td_steps=None)
    got = buf.batch_at(sampleable, np.ones(len(sampleable)), rng=np.random.default_rng(0), **kw)
    want = ref.batch_at(
        offsets[sampleable], np.ones(len(sampleable)), rng=np.random.default_rng(0), **kw
    )
    # Frames carry their index in the whole trajectory (make_traj), so equal obs are the same
    # frames, not just equal-looking ones.
    for name in ("obs", "mask", "rewards", "bootstrap_valid", "bootstrap_root_values",
                 "root_visits", "root_values", "td_steps"):  # fmt: skip
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    # Inside the data (mask), the actions are the stored ones, not random padding.
    inside = want.mask[:, 1:] > 0
    np.testing.assert_array_equal(got.actions[inside], want.actions[inside])


def test_unsampleable_tail_is_never_drawn():
    buf = make_buffer()
    buf.add(make_traj(1, 30), sample_limit=12)
    assert np.all(buf.priorities(np.arange(12, 30)) == 0)
    rng = np.random.default_rng(0)
    drawn = np.concatenate([buf.sample_indices(12, rng=rng, beta=1.0)[0] for _ in range(50)])
    assert drawn.max() < 12
    with pytest.raises(XtraError, match="positive priority"):
        buf.sample_indices(13, rng=rng, beta=1.0)
    with pytest.raises(ValueError, match="sample_limit"):
        buf.add(make_traj(2, 5), sample_limit=6)
    # Offline data gets priority 1 at load (B4.2); the overlap stays target-only.
    buf.reset_priorities(1.0)
    np.testing.assert_array_equal(buf.priorities(np.arange(30)), [1.0] * 12 + [0.0] * 18)
