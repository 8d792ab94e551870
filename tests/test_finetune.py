"""`xtra finetune` (paper §3.2, App. B, D): offline targets from the data, balanced batches, task
weights in the loop, every ablation switch changing only what it names, exact resumption, CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xtra import seeds
from xtra.act.collect import collect
from xtra.config import make_config
from xtra.errors import XtraError
from xtra.learn import train as online
from xtra.learn.batch import concat_batches, to_learn_batch
from xtra.learn.loop import build_networks
from xtra.model.networks import EfficientZeroNet
from xtra.rundir import load_model, save_model
from xtra.transfer.finetune import COMPONENT_SETS, finetune, method_label
from xtra.transfer.sources import open_dataset
from xtra.transfer.targets import data_targets, offline_target_makers
from xtra.transfer.task_weights import TaskWeights

ROOT = Path(__file__).resolve().parents[1]
TARGET, OFFLINE = "toy/catch", "toy/chain"
OBS = (12, 10, 10)
SMALL = [
    # The wiring tests compare state dicts with tensors loaded on the CPU.
    "device=cpu",
    # XTRA's networks as `paper` and `cpu` build them: the BatchNorm tests need running statistics.
    "model.norm=batch",
    "schedule.training_steps=12",
    "schedule.env_steps=200",
    "replay.start_transitions=40",
    "optim.batch_size=8",
    "transfer.offline_batch_size=8",
    "schedule.checkpoint_interval=4",
    "schedule.log_interval=1",
    "eval.interval=1000",
    "eval.num_episodes=1",
    "eval.final_max_steps=10",
    "search.num_simulations=4",
    "env.num_envs=2",
    "loss.augment_shift=0",
    # measure steps 2, 3, 4; update eta at 5 (and measure 8, 9, 10; update at 11)
    "transfer.task_weight_start=2",
    "transfer.task_weight_cycle=6",
    "transfer.task_weight_window=3",
    "transfer.similarity_threshold=1.0",  # no cosine exceeds 1: eta = 1 / (1 + 3) = 0.25
]


def _cfg(*extra: str):
    return make_config("tiny", overrides=[*SMALL, *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {OFFLINE: collect(OFFLINE, _cfg(), root / "chain", steps=120, chunk_steps=1000).path}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A "pretrained" student: a seeded network unlike the finetune's own random init."""
    cfg = _cfg()
    torch.manual_seed(123)
    model = EfficientZeroNet(cfg.model, OBS)
    path = tmp_path_factory.mktemp("pre") / "model.pt"
    save_model(path, model, cfg, games=[OFFLINE], obs_shape=OBS, stage="distill", step=0)
    return path


def _rows(path: Path) -> list[dict]:
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- offline targets


@pytest.mark.parametrize("mode", ["n_step", "xtra_as_coded"])
def test_offline_targets_come_from_the_data(data, mode):
    cfg = _cfg(f"transfer.offline_value_target={mode}")
    replay, _ = open_dataset(data[OFFLINE], OFFLINE, cfg)
    rng = np.random.default_rng(0)
    s = replay.sample(16, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
    t = data_targets(cfg, "cpu")(s, replay, rng)
    g, n = cfg.discount, 5
    b, u_len = s.mask.shape
    for i in range(b):
        for u in range(u_len):
            ret = sum(g**k * s.rewards[i, u + k] for k in range(n))
            if mode == "n_step":
                z = ret + g**n * s.bootstrap_root_values[i, u] * s.bootstrap_valid[i, u]
            else:
                z = ret + s.root_values[i, u]
            assert t.value[i, u].item() == pytest.approx(z * s.mask[i, u], abs=1e-5)
    # policy: the stored visits on the game's ALE ids, zeros elsewhere and past the end
    legal = list(replay.action_ids)
    pol = t.policy.numpy()
    assert pol.shape == (b, u_len, cfg.model.policy_size)
    np.testing.assert_allclose(pol[..., legal], s.root_visits * s.mask[..., None])
    assert not np.delete(pol, legal, axis=-1).any()
    assert t.value_prefix.shape == (b, u_len - 1)


def _favouring(cfg, action_id: int) -> EfficientZeroNet:
    """A network whose policy prior puts almost all mass on ALE id ``action_id`` and whose values
    are zero: a search with it gives that action most visits (rewards may still steer one)."""
    torch.manual_seed(7)
    net = EfficientZeroNet(cfg.model, OBS)
    f = net.prediction_network
    with torch.no_grad():
        for head in (f.fc_policy[-1], f.fc_value[-1]):
            head.weight.zero_()
            head.bias.zero_()
        f.fc_policy[-1].bias[action_id] = 20.0
    return net.eval()


@pytest.mark.parametrize("kind", ["reanalyze", "teacher"])
def test_offline_targets_follow_the_searching_network_not_the_data(data, kind):
    """``data`` trains toward the stored (here: a random policy's, uniform) visits;
    ``reanalyze`` re-searches with the run's target network, ``teacher`` with the game's
    teacher. The network that searches favours one action, so its targets must too."""
    cfg = _cfg(f"transfer.offline_targets={kind}", "targets.reanalyze_noise=false")
    replay, _ = open_dataset(data[OFFLINE], OFFLINE, cfg)
    legal = list(replay.action_ids)
    favourite = legal[-1]
    searcher = _favouring(cfg, favourite)
    other = EfficientZeroNet(cfg.model, OBS).eval()
    target_net, teachers = (
        (searcher, None) if kind == "reanalyze" else (other, {OFFLINE: (searcher, cfg)})
    )
    make = offline_target_makers(
        cfg, [OFFLINE], target_net, torch.device("cpu"), amp=False, teachers=teachers
    )[OFFLINE]
    rng = np.random.default_rng(0)
    s = replay.sample(16, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
    stored = data_targets(cfg, "cpu")(s, replay, rng).policy.numpy()
    searched = make(s, replay, rng).policy.numpy()
    live = s.mask > 0
    assert np.allclose(stored[live][:, legal], 1 / len(legal))  # a random policy's data
    assert searched[live][:, favourite].min() >= 0.75  # 3 of 4 simulations or more
    assert not np.delete(searched, legal, axis=-1).any()


def test_teacher_targets_need_a_teacher_per_offline_game(data, pretrained, tmp_path):
    cfg = _cfg("transfer.offline_targets=teacher")
    with pytest.raises(XtraError, match="--offline-teacher GAME=CKPT for toy/chain"):
        finetune(TARGET, cfg, tmp_path / "r", pretrained=pretrained, offline=data)


@pytest.mark.parametrize("kind", ["reanalyze", "teacher"])
def test_finetune_with_searched_offline_targets_trains(data, pretrained, tmp_path, kind):
    cfg = _cfg(f"transfer.offline_targets={kind}")
    teachers = {OFFLINE: pretrained} if kind == "teacher" else None
    finetune(
        TARGET,
        cfg,
        tmp_path / "r",
        pretrained=pretrained,
        offline=data,
        teachers=teachers,
        progress=False,
        stop_after=3,
    )
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["offline_targets"] == kind
    label = {"reanalyze": "reanalysed", "teacher": "from teachers"}[kind]
    assert run["method"] == f"XTRA offline targets {label}"
    rows = _rows(tmp_path / "r")
    assert math.isfinite(float(rows[-1]["loss/total"]))


def test_method_labels_follow_the_papers_columns():
    from xtra.games import TABLE1_METHODS

    assert method_label() == "XTRA"
    for label in (
        method_label(use_offline=False),
        method_label(use_pretraining=False),
    ):
        assert label in TABLE1_METHODS
    assert method_label(task_weights=False) == "XTRA w/o task weights"
    assert method_label(freeze=("representation",)) == "XTRA frozen representation"
    assert method_label(offline_targets="reanalyze", separate_batchnorm=True) == (
        "XTRA offline targets reanalysed, separate BatchNorm"
    )
    assert method_label(use_offline=False, separate_batchnorm=True) == "XTRA w/o cross-task"
    assert method_label(separate_batchnorm=True, loss_combination="eq1") == (
        "XTRA separate BatchNorm, Eq. 1 loss"
    )
    assert method_label(use_pretraining=False, task_weights=False) == (
        "XTRA w/o pretraining, w/o task weights"
    )


# --------------------------------------------------------------------------- switches (no training)


def _captured(monkeypatch, data, pretrained, tmp_path, **kw):
    """finetune()'s wiring without training: what it hands to run_loop."""
    seen = {}

    def fake(run, cfg, nets, learner, sources, **rest):
        seen.update(cfg=cfg, nets=nets, learner=learner, sources=sources, **rest)
        return None

    monkeypatch.setattr(online, "run_loop", fake)
    kw.setdefault("pretrained", pretrained)
    kw.setdefault("offline", data)
    finetune(TARGET, kw.pop("cfg", _cfg()), tmp_path / "run", progress=False, **kw)
    return seen


def test_default_wiring_balanced_batches_and_task_weights(monkeypatch, data, pretrained, tmp_path):
    cfg = _cfg("transfer.offline_batch_size=5")
    seen = _captured(monkeypatch, data, pretrained, tmp_path, cfg=cfg)
    target, offline = seen["sources"]
    assert (target.game, target.offline) == (TARGET, False)
    assert (offline.game, offline.offline) == (OFFLINE, True)
    assert [target.batch_size(s) for s in range(3)] == [8, 8, 8]
    assert [offline.batch_size(s) for s in range(3)] == [5, 5, 5]
    tw = seen["weights"]
    assert tw.enabled and tw.games == [OFFLINE]
    # the pretrained weights are loaded everywhere, in the target networks too
    pre, _, _ = load_model(pretrained)
    for net in (seen["nets"].model, seen["nets"].target, seen["nets"].next_target):
        for (k, x), y in zip(net.state_dict().items(), pre.state_dict().values()):
            assert torch.equal(x, y), k


def test_no_offline_trains_on_the_target_only(monkeypatch, data, pretrained, tmp_path):
    seen = _captured(monkeypatch, data, pretrained, tmp_path, use_offline=False)
    assert [s.game for s in seen["sources"]] == [TARGET] and seen["weights"] is None
    assert seen["cfg"] == _cfg("transfer.use_offline=false")  # recorded in config.yaml
    # the config field alone does the same
    seen = _captured(
        monkeypatch, data, pretrained, tmp_path / "b", cfg=_cfg("transfer.use_offline=false")
    )
    assert [s.game for s in seen["sources"]] == [TARGET] and seen["weights"] is None


def test_no_task_weights_only_switches_them_off(monkeypatch, data, pretrained, tmp_path):
    seen = _captured(monkeypatch, data, pretrained, tmp_path, task_weights=False)
    assert not seen["weights"].enabled
    assert seen["cfg"].transfer.task_weights is False
    assert [s.game for s in seen["sources"]] == [TARGET, OFFLINE]


def test_target_batch_changes_the_target_share_only(monkeypatch, data, pretrained, tmp_path):
    seen = _captured(monkeypatch, data, pretrained, tmp_path, target_batch=16)
    target, offline = seen["sources"]
    assert target.batch_size(0) == 16 and offline.batch_size(0) == 8


def test_no_pretraining_is_the_seeded_random_init(monkeypatch, data, pretrained, tmp_path):
    seen = _captured(monkeypatch, data, None, tmp_path, use_pretraining=False)
    torch.manual_seed(_cfg().seed)
    fresh = EfficientZeroNet(_cfg().model, OBS)
    for (k, x), y in zip(seen["nets"].model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(x, y), k
    assert [s.game for s in seen["sources"]] == [TARGET, OFFLINE]


def test_freeze_takes_h_out_of_the_optimiser_and_keeps_its_bn_in_eval(
    monkeypatch, data, pretrained, tmp_path
):
    seen = _captured(monkeypatch, data, pretrained, tmp_path, freeze=("representation",))
    nets = seen["nets"]
    model = nets.model
    in_optim = {id(p) for p in seen["learner"].parameters()}
    rep = {id(p) for p in model.component_parameters("representation")}
    assert not rep & in_optim
    assert in_optim == {id(p) for p in model.parameters()} - rep
    model.train()
    assert not model.representation_network.training
    assert all(not m.training for m in model.representation_network.modules())
    assert model.dynamics_network.training and model.prediction_network.training
    for copy_ in (nets.target, nets.next_target):  # the copies behave the same
        copy_.train()
        assert not copy_.representation_network.training
    assert seen["cfg"] == _cfg("transfer.freeze=[representation]")
    assert [s.game for s in seen["sources"]] == [TARGET, OFFLINE]


@pytest.mark.parametrize("transfer", list(COMPONENT_SETS))
def test_transfer_loads_exactly_the_named_components(pretrained, transfer):
    cfg = _cfg()
    pre, _, _ = load_model(pretrained)
    nets, _ = build_networks(
        cfg,
        OBS,
        torch.device("cpu"),
        pretrained_state=pre.state_dict(),
        components=COMPONENT_SETS[transfer],
    )
    torch.manual_seed(cfg.seed)
    fresh = EfficientZeroNet(cfg.model, OBS)
    pre_sd, fresh_sd = pre.state_dict(), fresh.state_dict()
    for name in COMPONENT_SETS["all"]:
        keys = [k for k in nets.model.state_dict() if k.startswith(nets.model._prefixes(name))]
        expect = pre_sd if name in COMPONENT_SETS[transfer] else fresh_sd
        for k in keys:
            assert torch.equal(nets.model.state_dict()[k], expect[k]), (name, k)
        weights = [k for k in keys if k.endswith("weight")]
        assert any(not torch.equal(pre_sd[k], fresh_sd[k]) for k in weights)


@pytest.mark.parametrize("shift", [0, 1])
def test_measurement_leaves_the_update_unchanged(data, pretrained, shift):
    """A measurement step trains exactly as an unmeasured one (its forward is put back)."""
    cfg = _cfg(f"loss.augment_shift={shift}")
    cpu = torch.device("cpu")
    replay, _ = open_dataset(data[OFFLINE], OFFLINE, cfg)
    rng = np.random.default_rng(0)
    make = data_targets(cfg, cpu)
    parts = []
    for _ in range(2):
        s = replay.sample(6, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
        targets = make(s, replay, rng)
        parts.append(to_learn_batch(s, targets, replay.action_ids, policy_size=18, device=cpu))
    batch = concat_batches(parts)
    pre, _, _ = load_model(pretrained)
    states = []
    for measure in (False, True):
        nets, learner = build_networks(
            cfg, OBS, cpu, pretrained_state=pre.state_dict(), components=COMPONENT_SETS["all"]
        )
        if measure:
            w = TaskWeights.from_config(cfg, [OFFLINE])
            assert w.weights_for(2, batch, learner).tolist() == [1.0, 1.0]
            assert w.measurements.tolist() == [1]
            assert not math.isnan(w.metrics()["task/cos/toy/chain"])
        learner.update(batch, 2)
        states.append(nets.model.state_dict())
    for k, x in states[0].items():
        assert torch.equal(x, states[1][k]), k


def test_measurement_samples_are_a_draw_of_their_own(data, pretrained):
    """transfer.task_weight_samples=N: the cosines are those of draw(N, rng) on the weights' own
    stream, not of the step's batch, and the update is still that of an unmeasured step."""
    cfg = _cfg("transfer.task_weight_samples=5")
    cpu = torch.device("cpu")
    replay, _ = open_dataset(data[OFFLINE], OFFLINE, cfg)
    make = data_targets(cfg, cpu)

    def draw(n, rng):  # two sources from one dataset, as the step's batch below
        parts = []
        for _ in range(2):
            s = replay.sample(n, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
            parts.append(to_learn_batch(s, make(s, replay, rng), replay.action_ids,
                                        policy_size=18, device=cpu))  # fmt: skip
        return concat_batches(parts)

    batch = draw(6, np.random.default_rng(0))
    pre, _, _ = load_model(pretrained)
    fresh = np.random.default_rng(seeds.stream(cfg.seed, seeds.TASK_WEIGHTS))
    measured = {}
    for name, samples, measured_batch, calls in (
        ("own draw", 5, batch, []),
        ("the draw, given", 0, draw(5, fresh), []),
        ("step's batch", 0, batch, []),
    ):
        nets, learner = build_networks(
            cfg, OBS, cpu, pretrained_state=pre.state_dict(), components=COMPONENT_SETS["all"]
        )
        w = TaskWeights.from_config(cfg, [OFFLINE])
        w.samples = samples
        w.weights_for(2, measured_batch, learner, lambda n, g, c=calls: c.append(n) or draw(n, g))
        measured[name] = (w.last_cos.tolist(), w.last_floor.tolist(), calls)
        learner.update(batch, 2)
        measured[name + " model"] = nets.model.state_dict()
    assert measured["own draw"][2] == [5] and measured["step's batch"][2] == []
    assert measured["own draw"][:2] == measured["the draw, given"][:2]
    assert measured["own draw"][0] != measured["step's batch"][0]
    for k, x in measured["own draw model"].items():
        assert torch.equal(x, measured["step's batch model"][k]), k


def test_separate_batchnorm_is_two_passes_and_keeps_the_targets_statistics(data, pretrained):
    """transfer.separate_batchnorm: the target's rows give exactly the losses and the BatchNorm
    running statistics of a pass over the target's rows alone; the offline rows those of a pass
    over themselves, leaving the running statistics as the target's pass left them."""
    cfg = _cfg("loss.augment_shift=1", "transfer.separate_batchnorm=true")
    cpu = torch.device("cpu")
    replay, _ = open_dataset(data[OFFLINE], OFFLINE, cfg)
    rng = np.random.default_rng(0)
    make = data_targets(cfg, cpu)
    parts = []
    for n in (6, 4):
        s = replay.sample(n, unroll_steps=5, td_steps=5, auto_td_steps=None, rng=rng, beta=1.0)
        parts.append(to_learn_batch(s, make(s, replay, rng), replay.action_ids, policy_size=18,
                                    device=cpu))  # fmt: skip
    pre, _, _ = load_model(pretrained)

    def fresh(*extra):
        return build_networks(
            _cfg("loss.augment_shift=1", *extra), OBS, cpu, pretrained_state=pre.state_dict(),
            components=COMPONENT_SETS["all"],
        )  # fmt: skip

    nets, learner = fresh("transfer.separate_batchnorm=true")
    terms = learner.losses(concat_batches(parts))
    ref_nets, ref = fresh()  # one source per call: the plain single pass
    target = ref.losses(parts[0])
    after_target = {k: b.clone() for k, b in ref_nets.model.named_buffers()}
    offline = ref.losses(parts[1])
    for name in ("total", "value", "policy", "value_prefix", "consistency", "value_k0"):
        got = getattr(terms, name)
        torch.testing.assert_close(got[:6], getattr(target, name))
        torch.testing.assert_close(got[6:], getattr(offline, name))
    for k, b in nets.model.named_buffers():
        assert torch.equal(b, after_target[k]), k
    # The shared single pass (the default) normalises over all 10 rows: other losses.
    _, joint = fresh()
    assert not torch.allclose(joint.losses(concat_batches(parts)).total[:6], target.total)
    # An update backpropagates through both passes.
    assert math.isfinite(learner.update(concat_batches(parts), 2).metrics["loss/total"])


def test_bad_switches_are_one_line_errors(data, pretrained, tmp_path):
    with pytest.raises(XtraError, match="--transfer"):
        finetune(
            TARGET, _cfg(), tmp_path / "a", pretrained=pretrained, offline=data, components="x"
        )
    with pytest.raises(XtraError, match="--pretrained"):
        finetune(TARGET, _cfg(), tmp_path / "b", pretrained=None, offline=data)
    with pytest.raises(XtraError, match="--offline"):
        finetune(TARGET, _cfg(), tmp_path / "c", pretrained=pretrained)
    with pytest.raises(XtraError, match="target game"):
        finetune(OFFLINE, _cfg(), tmp_path / "d", pretrained=pretrained, offline=data)


# --------------------------------------------------------------------------- training


def test_frozen_representation_stays_fixed(data, pretrained, tmp_path):
    cfg = _cfg()
    finetune(
        TARGET,
        cfg,
        tmp_path / "run",
        pretrained=pretrained,
        offline=data,
        freeze=("representation",),
        progress=False,
        stop_after=4,
    )
    ckpt = tmp_path / "run" / "checkpoints" / "step-000000004" / "state.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    pre, _, _ = load_model(pretrained)
    changed = {"representation": [], "other": []}
    for k, x in pre.state_dict().items():
        part = "representation" if k.startswith("representation_network.") else "other"
        if x.is_floating_point():
            changed[part].append(not torch.equal(state[k], x))
    assert not any(changed["representation"])  # weights and BatchNorm statistics
    assert any(changed["other"])


def test_finetune_resumes_exactly_and_logs_task_weights(data, pretrained, tmp_path):
    cfg = _cfg()
    kw = dict(pretrained=pretrained, offline=data, progress=False)
    full = finetune(TARGET, cfg, tmp_path / "full", **kw)
    finetune(TARGET, cfg, tmp_path / "resumed", stop_after=7, **kw)  # inside a measurement gap
    resumed = finetune(TARGET, cfg, tmp_path / "resumed", **kw)
    assert resumed.steps == full.steps == 12 and resumed.env_steps == full.env_steps
    ma, _, pa = load_model(full.run_dir)
    mb, _, _ = load_model(resumed.run_dir)
    for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), k
    assert pa["stage"] == "finetune"
    drop = ("perf/", "time/")
    a, b = _rows(full.run_dir), _rows(resumed.run_dir)
    assert [{k: v for k, v in r.items() if not k.startswith(drop)} for r in a] == [
        {k: v for k, v in r.items() if not k.startswith(drop)} for r in b
    ]
    # task/weight: 1 until the update at step 5, then 1/(1+3) (no cosine exceeds 1.0)
    by_step = {int(r["step"]): r for r in a if r.get("task/weight/toy/chain")}
    assert [float(by_step[s]["task/weight/toy/chain"]) for s in (1, 5, 6, 12)] == [
        1.0,
        1.0,
        0.25,
        0.25,
    ]
    assert math.isnan(float(by_step[1]["task/cos/toy/chain"]))
    assert -1.0 <= float(by_step[3]["task/cos/toy/chain"]) <= 1.0
    assert "loss/toy/chain/total" in a[-1] and "loss/toy/catch/total" in a[-1]


def test_measurement_samples_train_as_the_step_batch_and_resume_exactly(data, pretrained, tmp_path):
    """Through the loop: with eta forced equal (no cosine exceeds 1.0) a run measuring its own
    samples trains exactly as one measuring the step's batch; its cosines differ; it resumes
    exactly (the measurement stream is in the checkpoint)."""
    kw = dict(pretrained=pretrained, offline=data, progress=False)
    base = finetune(TARGET, _cfg(), tmp_path / "base", **kw)
    cfg = _cfg("transfer.task_weight_samples=6")
    full = finetune(TARGET, cfg, tmp_path / "full", **kw)
    finetune(TARGET, cfg, tmp_path / "resumed", stop_after=4, **kw)  # checkpoint mid-window
    resumed = finetune(TARGET, cfg, tmp_path / "resumed", **kw)
    models = [load_model(r.run_dir)[0].state_dict() for r in (base, full, resumed)]
    for k, x in models[0].items():
        assert torch.equal(x, models[1][k]) and torch.equal(x, models[2][k]), k
    cos = [
        [
            r["task/cos/toy/chain"]
            for r in _rows(d)
            if r.get("task/cos/toy/chain") not in ("", "nan")
        ]
        for d in (base.run_dir, full.run_dir, resumed.run_dir)
    ]
    assert cos[1] == cos[2] and cos[1] != cos[0] and len(cos[1]) >= 3


def test_cli_finetune_help_and_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "xtra.cli", "finetune", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0
    for flag in (
        "--pretrained",
        "--offline",
        "--no-offline",
        "--no-pretraining",
        "--no-task-weights",
        "--freeze",
        "--transfer",
        "--target-batch",
        "--offline-targets",
        "--offline-teacher",
    ):
        assert flag in out.stdout, flag
    bad = subprocess.run(
        [sys.executable, "-m", "xtra.cli", "finetune", TARGET, "--preset", "tiny",
         "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2 and "error:" in bad.stderr and "--pretrained" in bad.stderr


def test_cli_teacher_targets_without_a_teacher_is_a_one_line_error(data, pretrained, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "xtra.cli", "finetune", TARGET, "--preset", "tiny",
         "--pretrained", str(pretrained), "--offline", f"{OFFLINE}={data[OFFLINE]}",
         "--offline-targets", "teacher", "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--offline-teacher GAME=CKPT for toy/chain" in out.stderr


def test_eq1_combination_trains_through_an_update_of_eta(data, pretrained, tmp_path):
    cfg = _cfg("transfer.loss_combination=eq1")
    kw = dict(pretrained=pretrained, offline=data, progress=False)
    finetune(TARGET, cfg, tmp_path / "run", stop_after=6, **kw)
    rows = {int(r["step"]): r for r in _rows(tmp_path / "run")}
    assert float(rows[6]["task/weight/toy/chain"]) == 0.25
    assert math.isfinite(float(rows[6]["loss/total"]))


def test_cli_finetune_runs(data, pretrained, tmp_path):
    args = [sys.executable, "-m", "xtra.cli", "finetune", TARGET, "--preset", "tiny", "--quiet",
            "--pretrained", str(pretrained), "--offline", f"{OFFLINE}={data[OFFLINE]}",
            "--no-task-weights", "--freeze", "representation", "--run-dir", str(tmp_path / "r")]  # fmt: skip
    for s in SMALL:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "final evaluation on toy/catch" in out.stdout
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["method"] == "XTRA w/o task weights, frozen representation"
    assert run["freeze"] == ["representation"]
    rows = _rows(tmp_path / "r")
    assert {float(r["task/weight/toy/chain"]) for r in rows if r.get("task/weight/toy/chain")} == {
        1.0
    }


def test_cli_finetune_from_a_recipe(data, pretrained, tmp_path, capsys):
    from xtra.cli import main

    recipe = tmp_path / "toy.yaml"
    recipe.write_text(
        "name: toy\ntarget: toy/catch\npretrain: [toy/chain]\npreset: tiny\n"
        f"set: [{', '.join(SMALL)}]\n"
    )
    root = Path(data[OFFLINE]).parent
    (root / "toy_chain").symlink_to(data[OFFLINE])  # DATA_ROOT/<game> as the recipes expect
    run = tmp_path / "r"
    args = ["finetune", "--recipe", str(recipe), "--data-root", str(root), "--quiet",
            "--pretrained", str(pretrained), "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["game"] == "toy/catch" and list(info["offline"]) == ["toy/chain"]
    assert json.loads((run / "final.json").read_text())["steps"] == 12  # SMALL's budget
    # A recipe game without its dataset, and a GAME that contradicts the recipe: one line each.
    assert main(["finetune", "--recipe", str(recipe), "--pretrained", str(pretrained)]) == 2
    assert "give --data-root" in capsys.readouterr().err
    assert main(["finetune", "toy/chain", "--recipe", str(recipe), "--data-root", str(root)]) == 2
    assert "targets toy/catch" in capsys.readouterr().err


def test_value_probe_benchmark_runs(run_benchmark, data, pretrained, tmp_path):
    """benchmarks/value_probe.py on a toy model: four values per model, in the table and JSON."""
    out = tmp_path / "probe.json"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy_chain").symlink_to(Path(data[OFFLINE]).resolve())
    run = run_benchmark(
        "value_probe", pretrained, "--target", TARGET, "--data", tmp_path / "data",
        "--sources", OFFLINE, "--envs", "2", "--steps", "5", "--batches", "2", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    values = json.loads(out.read_text())["values"][str(pretrained)]
    assert set(values) == {"alone_train", "alone_eval", "mixed_train", "mixed_eval"}
    assert all(math.isfinite(v) for v in values.values())
    assert "| alone, train |" in run.stdout


def test_gradient_probe_benchmark_runs(run_benchmark, data, pretrained, tmp_path):
    """benchmarks/gradient_probe.py on a toy model: per size and game a noise floor, a cosine
    with the target and their disattenuated ratio; more samples average the noise away."""
    catch = collect(TARGET, _cfg(), tmp_path / "catch", steps=120, chunk_steps=1000).path
    out = tmp_path / "gradients.json"
    run = run_benchmark(
        "gradient_probe", pretrained, "--data", f"{TARGET}={catch}", f"{OFFLINE}={data[OFFLINE]}",
        "--sizes", "2", "48", "--repeats", "2", "--target-targets", "reanalyze", "--out", out,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    sizes = result["models"][str(pretrained)]
    assert set(sizes) == {"2", "48"} and set(sizes["2"]) == {TARGET, OFFLINE}
    for games in sizes.values():
        t = games[TARGET]
        # The target against an independent draw of itself: its floor is its only reference.
        assert t["true"] == pytest.approx(t["cos"] / t["floor"])
        assert all(math.isfinite(v) for g in games.values() for v in g.values())
    assert sizes["48"][TARGET]["floor"] > sizes["2"][TARGET]["floor"]
    assert "floor" in run.stdout
