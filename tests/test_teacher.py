"""Offline teachers (`xtra teacher`) and the teacher target maker of distillation (spec B10.2-3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xtra import games
from xtra.act.collect import collect
from xtra.actions import ale_to_local, local_to_ale, scatter_policy
from xtra.config import make_config
from xtra.errors import CheckpointError, DatasetError, XtraError
from xtra.learn.loop import make_planner
from xtra.learn.reanalyze import unrolled_obs
from xtra.model.networks import EfficientZeroNet
from xtra.rundir import load_model, save_model
from xtra.transfer.sources import load_teacher, open_dataset
from xtra.transfer.targets import teacher_targets
from xtra.transfer.teacher import train_teacher

SMALL = [
    "schedule.training_steps=16",
    "optim.batch_size=8",
    "schedule.checkpoint_interval=8",
    "schedule.log_interval=4",
    "eval.interval=100",
    "eval.num_episodes=1",
    "search.num_simulations=3",
    "env.num_envs=2",
]


def _cfg(*extra: str):
    return make_config("tiny", overrides=[*SMALL, *extra])


@pytest.fixture(scope="module")
def catch_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "catch"
    return collect("toy/catch", _cfg(), out, steps=200, chunk_steps=1000).path


def test_action_ids_round_trip_for_every_game():
    for g in games.GAMES.values():
        legal = np.asarray(g.legal_actions)
        local = np.arange(len(legal))
        ale = local_to_ale(local, legal)
        assert ale.tolist() == list(g.legal_actions)
        assert ale_to_local(ale, legal).tolist() == local.tolist()
        assert ale.min() >= 0 and ale.max() < 18
    with pytest.raises(XtraError, match="not legal"):
        ale_to_local(np.array([1]), games.get_game("toy/chain").legal_actions)


def test_teacher_targets_equal_the_teachers_search_and_value(catch_data):
    cfg = _cfg("model.init_zero=false", "targets.td_steps=3")  # non-zero values and policies
    replay, _ = open_dataset(catch_data, "toy/catch", cfg)
    teacher = EfficientZeroNet(cfg.model, (12, 10, 10)).eval()
    sample = replay.sample(
        6, unroll_steps=cfg.targets.unroll_steps, td_steps=3, auto_td_steps=None,
        rng=np.random.default_rng(0), beta=1.0,
    )  # fmt: skip
    make = teacher_targets(teacher, cfg, cfg, torch.device("cpu"), noise=False)
    got = make(sample, replay, np.random.default_rng(5))

    # Policies: one search of the teacher over every real position, scattered to 18 ALE ids.
    planner = make_planner(teacher, cfg, torch.device("cpu"), amp=False)
    b, u_len = sample.mask.shape
    valid = sample.mask > 0
    obs_u = unrolled_obs(sample.obs, cfg.env.frame_stack, u_len - 1)
    plan = planner.plan(
        obs_u[valid], replay.action_ids, add_noise=False, rng=np.random.default_rng(5)
    )
    expected = np.zeros((b, u_len, len(replay.action_ids)), dtype=np.float32)
    expected[valid] = plan.visit_policy
    expected = scatter_policy(expected, replay.action_ids, 18)
    np.testing.assert_allclose(got.policy.numpy(), expected, atol=1e-6)
    assert np.allclose(got.policy.numpy()[valid].sum(-1), 1.0)
    assert got.policy.numpy()[..., [1, 2]].sum() == 0  # ids catch does not have

    # Values: sum_{j<n} g^j r_{t+u+j} + g^n v_teacher(s_{t+u+n}), one position at a time.
    g = cfg.discount
    for i in range(b):
        for u in range(u_len):
            n = int(sample.td_steps[i])
            z = sum(g**j * sample.rewards[i, u + j] for j in range(n)) * sample.mask[i, u]
            if sample.bootstrap_valid[i, u] > 0:
                frames = replay.stacked_obs(
                    np.array([sample.traj_ids[i]]), np.array([sample.bootstrap_positions[i, u]])
                )
                v = planner.root_inference(frames.reshape(1, -1, 10, 10)).value.item()
                z += g**n * v
            assert got.value[i, u].item() == pytest.approx(z, abs=1e-4), (i, u)


def test_teacher_trains_offline_resumes_exactly_and_saves_a_model(catch_data, tmp_path):
    cfg = _cfg()
    full = train_teacher(catch_data, cfg, tmp_path / "full", progress=False)
    assert full.final is not None and full.env_steps == 0
    stopped = train_teacher(catch_data, cfg, tmp_path / "res", progress=False, stop_after=12)
    assert stopped.final is None
    resumed = train_teacher(catch_data, cfg, tmp_path / "res", progress=False)
    a, _, pa = load_model(full.run_dir)
    b, _, _ = load_model(resumed.run_dir)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert pa["stage"] == "teacher" and pa["games"] == ["toy/catch"]
    assert resumed.final.scores.tolist() == full.final.scores.tolist()


def test_bad_teacher_inputs_are_one_line_errors(catch_data, tmp_path):
    cfg = _cfg()
    with pytest.raises(DatasetError):
        train_teacher(catch_data, cfg, tmp_path / "t", game="toy/chain", progress=False)
    with pytest.raises(DatasetError, match="frame_stack"):
        open_dataset(catch_data, "toy/catch", _cfg("env.frame_stack=2"))
    model = EfficientZeroNet(cfg.model, (12, 10, 10))
    save_model(tmp_path / "m.pt", model, cfg, games=["toy/catch"], obs_shape=(12, 10, 10),
               stage="teacher", step=0)  # fmt: skip
    with pytest.raises(CheckpointError, match="not toy/chain"):
        load_teacher(tmp_path / "m.pt", "toy/chain", (12, 10, 10), "cpu")
    with pytest.raises(CheckpointError, match="observations"):
        load_teacher(tmp_path / "m.pt", "toy/catch", (6, 10, 10), "cpu")


def test_a_dataset_whose_frames_the_env_does_not_give_is_a_one_line_error(tmp_path):
    """MinAtar frames depend on env.minatar_obs: a teacher on 'rgb' data under 'planes' would fail
    only at its first evaluation, deep in the network, after its first training steps."""
    rgb = collect(
        "minatar/breakout", _cfg("env.minatar_obs=rgb"), tmp_path / "b", steps=20, chunk_steps=100
    ).path
    replay, game = open_dataset(rgb, "minatar/breakout", _cfg("env.minatar_obs=rgb"))
    assert game == "minatar/breakout" and replay.frame_shape == (3, 10, 10)
    with pytest.raises(DatasetError, match=r"\(3, 10, 10\).*\(10, 10, 10\).*env\.minatar_obs=rgb"):
        open_dataset(rgb, "minatar/breakout", _cfg("env.minatar_obs=planes"))
    with pytest.raises(DatasetError, match="env.minatar_obs=rgb"):
        train_teacher(rgb, _cfg("env.minatar_obs=planes"), tmp_path / "t", progress=False)
