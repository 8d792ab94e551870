"""Typed config: presets carry the paper's numbers, YAML round trips, overrides and validation."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from xtra import config as C
from xtra.errors import ConfigError


def test_paper_preset_has_table4_values():
    cfg = C.paper()
    # XTRA Table 4 / spec A10, B8.
    assert (cfg.env.obs_size, cfg.env.frame_stack, cfg.env.frame_skip) == (96, 4, 4)
    assert cfg.env.clip_rewards and cfg.env.episode_life
    assert cfg.env.max_episode_steps * cfg.env.frame_skip == 108_000
    assert cfg.discount == pytest.approx(0.997**4) == pytest.approx(0.988053892)
    assert cfg.optim.batch_size == 256 and cfg.transfer.offline_batch_size == 256
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.2, 0.9, 1e-4)
    assert cfg.optim.lr * cfg.optim.lr_decay_rate == pytest.approx(0.02)
    assert cfg.optim.max_grad_norm == 5
    assert (cfg.replay.alpha, cfg.replay.beta_start, cfg.replay.beta_end) == (0.6, 0.4, 1.0)
    assert cfg.schedule.training_steps == 120_000 and cfg.schedule.env_steps == 100_000
    assert cfg.eval.num_episodes == 32
    assert cfg.replay.start_transitions == 2000
    assert (
        cfg.schedule.selfplay_update_interval == 100 and cfg.schedule.target_update_interval == 200
    )
    assert cfg.targets.unroll_steps == 5 and cfg.targets.td_steps == 5
    assert (cfg.loss.policy_coeff, cfg.loss.value_coeff, cfg.loss.consistency_coeff) == (
        1,
        0.25,
        2,
    )
    assert cfg.search.lstm_horizon == 5 and cfg.search.dirichlet_alpha == 0.3
    assert cfg.search.num_simulations == 50 and cfg.targets.reanalyze_ratio == 1.0
    # spec A5 / B7 constants
    assert (cfg.search.c1, cfg.search.c2, cfg.search.exploration_fraction) == (1.25, 19652, 0.25)
    assert (cfg.transfer.task_weight_window, cfg.transfer.task_weight_cycle) == (500, 5000)
    assert (cfg.transfer.task_weight_start, cfg.transfer.similarity_threshold) == (10_000, 0.1)
    assert (cfg.eval.periodic_max_steps, cfg.eval.final_max_steps) == (3000, 27000)
    assert cfg.model.repr_blocks == 1
    assert dataclasses.replace(cfg.model, size="ez-l").repr_blocks == 4


@pytest.mark.parametrize("name", C.PRESETS)
def test_presets_validate_and_roundtrip_yaml(name, tmp_path):
    cfg = C.preset(name)
    assert cfg.preset == name
    path = tmp_path / "config.yaml"
    C.save_yaml(cfg, path)
    assert C.load_yaml(path) == cfg
    assert C.from_dict(C.to_dict(cfg)) == cfg


def test_discount_is_one_field_per_agent_step():
    assert C.cpu().discount == C.tiny().discount == pytest.approx(0.988053892)
    cfg = C.make_config("cpu", overrides=["env.discount=0.95"])
    assert cfg.discount == cfg.env.discount == 0.95
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="env.discount"):
            C.make_config("cpu", overrides=[f"env.discount={bad}"])


def test_overrides_coerce_types():
    cfg = C.make_config(
        "tiny",
        overrides=[
            "search.num_simulations=16",
            "optim.amp=on",
            "env.grayscale=true",
            "search.temperature_progress=false",
            "search.temperature_steps=[10, 20]",
            "optim.lr=1e-3",
            "seed=3",
            "model.size=ez-l",
        ],
    )
    assert cfg.search.num_simulations == 16
    assert cfg.optim.amp == "on"  # stays a string, not YAML's boolean
    assert cfg.env.grayscale is True
    assert cfg.search.temperature_steps == (10, 20)
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.seed == 3 and cfg.model.repr_blocks == 4
    assert cfg.preset == "tiny"


def test_partial_yaml_on_top_of_preset(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("search:\n  num_simulations: 7\noptim:\n  batch_size: 12\n")
    cfg = C.make_config("cpu", path, ["optim.batch_size=13"])
    assert cfg.search.num_simulations == 7
    assert cfg.optim.batch_size == 13  # --set wins over the file
    assert cfg.model == C.cpu().model


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["search.num_simulations=0"], "search.num_simulations=0 is out of range"),
        (["optim.lr=0"], "optim.lr=0.0 is out of range: allowed (0, inf]"),
        (["replay.alpha=1.5"], "replay.alpha=1.5 is out of range"),
        (["model.size=xl"], "model.size='xl' is not allowed: choose one of ez, ez-l"),
        (["optim.lr=fast"], "optim.lr='fast' has the wrong type: expected float"),
        (["search.num_simulations=2.5"], "wrong type: expected int"),
        (["nosuch.field=1"], "unknown field 'nosuch.field'"),
        (["search.nosuch=1"], "unknown field 'search.nosuch'"),
        (["search.num_simulations"], "is malformed"),
        (["device=tpu"], "device='tpu' is not allowed"),
        (["optim.optimizer=rmsprop"], "optim.optimizer='rmsprop' is not allowed"),
        (["search.temperatures=[1.0]"], "give one more temperature than thresholds"),
        (["transfer.task_weight_window=6000"], "exceeds transfer.task_weight_cycle"),
        (["replay.beta_start=0.9", "replay.beta_end=0.5"], "beta anneals upward"),
        (["optim.lr=.nan"], "must be a finite number"),
    ],
)
def test_bad_values_name_the_field(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        C.make_config("tiny", overrides=overrides)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge': choose one of paper, cpu, tiny"):
        C.preset("huge")


def test_malformed_and_missing_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  num_simulations: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        C.load_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_yaml(tmp_path / "missing.yaml")
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        C.load_yaml(notmap)
    badsection = tmp_path / "section.yaml"
    badsection.write_text("search: 5\n")
    with pytest.raises(ConfigError, match="section 'search' must be a mapping"):
        C.load_yaml(badsection)


def test_configs_are_frozen():
    cfg = C.tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.search.num_simulations = 3  # type: ignore[misc]


def test_every_field_has_help():
    for name, _default, help_text in C.field_help():
        assert help_text, name


def test_fields_moved_by_the_redesign_still_load(tmp_path):
    """Config files and --set arguments with a field's old name set its new field."""
    from xtra.config import RENAMED_FIELDS, load_yaml, make_config

    old = tmp_path / "old.yaml"
    old.write_text(
        "preset: tiny\nreplay: {unroll_steps: 3, capacity: 500}\n"
        "optim: {training_steps: 7, value_coeff: 0.5, lr: 0.3}\n"
    )
    cfg = load_yaml(old)
    assert cfg.targets.unroll_steps == 3 and cfg.replay.capacity == 500
    assert cfg.schedule.training_steps == 7 and cfg.loss.value_coeff == 0.5 and cfg.optim.lr == 0.3
    cfg = make_config("tiny", overrides=["optim.env_steps=9", "replay.reanalyze_ratio=0.25"])
    assert cfg.schedule.env_steps == 9 and cfg.targets.reanalyze_ratio == 0.25
    for old_name, new_name in RENAMED_FIELDS.items():
        section, name = new_name.split(".")
        assert old_name.split(".")[1] == name and hasattr(getattr(cfg, section), name)


def test_a_config_written_before_the_optimizer_field_reads_as_sgd(tmp_path):
    """Run configs from before `optim.optimizer` trained with SGD, whatever the preset says now."""
    old = C.to_dict(C.make_config("cpu", overrides=["optim.optimizer=sgd", "optim.lr=0.1"]))
    del old["optim"]["optimizer"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert C.load_yaml(path).optim.optimizer == "sgd"
    assert C.make_config("cpu").optim.optimizer == "adam"
    # A file that names the optimiser, or leaves the optim section out, keeps it or the preset's.
    assert C.from_dict({"preset": "cpu", "optim": {"lr": 0.01}}).optim.optimizer == "adam"
    assert C.from_dict({"preset": "cpu"}).optim.optimizer == "adam"
