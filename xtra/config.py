"""Typed configuration: one frozen dataclass per concern, presets, YAML and ``--set`` overrides.

Every number from the paper or the reference code lives here, once, with its source:
"Table 4" is the XTRA paper's hyper-parameter table, "A5", "B7" ... are sections of
``docs/algorithm.md`` (our reading of the EfficientZero and XTRA code). Presets:

* ``paper`` -- the paper's hyper-parameters (for GPUs);
* ``cpu``   -- MinAtar-scale runs that take minutes to an hour on 2 CPU cores;
* ``tiny``  -- seconds, for tests and smoke runs.

Use :func:`make_config` to build a validated config from a preset plus overrides.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from xtra.atomic import atomic_write_text
from xtra.errors import ConfigError

PRESETS = ("paper", "cpu", "tiny")


def _f(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple | None = None,
    lo_open: bool = False,
) -> Any:
    """A config field with its help text and allowed range (checked by :func:`validate`)."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "lo_open": lo_open}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EnvConfig:
    """Environment protocol (spec A1, A9; Table 4)."""

    frame_skip: int = _f(
        4, "agent step = this many emulator frames, max over the last two (A1)", lo=1, hi=16
    )
    frame_stack: int = _f(4, "frames stacked into one observation (Table 4)", lo=1, hi=16)
    obs_size: int = _f(
        96,
        "Atari frames are resized to obs_size x obs_size with INTER_AREA (Table 4)",
        lo=8,
        hi=210,
    )
    grayscale: bool = _f(False, "Atari: 1 gray channel instead of RGB (EZ uses RGB)")
    noop_max: int = _f(30, "Atari: 1..noop_max random no-ops at reset (A1)", lo=0, hi=100)
    episode_life: bool = _f(
        True, "training episodes end on life loss; evaluation ones never do (Table 4)"
    )
    clip_rewards: bool = _f(True, "train on sign(reward); scores always use raw rewards (Table 4)")
    max_episode_steps: int = _f(
        27000,
        "cap on agent steps per training episode: 108K frames (Table 4; EZ HEAD uses 3000)",
        lo=1,
    )
    repeat_action_probability: float = _f(
        0.0, "sticky actions; Atari100k uses none (A1)", lo=0.0, hi=1.0
    )
    minatar_obs: str = _f(
        "rgb",
        "MinAtar observation: 'rgb' (3 channels, shared across games; later channels hide the "
        "player in 0.4-2.3% of frames), 'rgb_player_top' (the player painted last), "
        "'channels' (native; 4-10 per game) or 'planes' (native, padded to 10 for every game)",
        choices=("rgb", "rgb_player_top", "channels", "planes"),
    )
    num_envs: int = _f(
        8, "environments stepped together in self-play (XTRA script: 8; EZ: 4)", lo=1, hi=4096
    )
    discount: float = _f(
        0.997**4,
        "gamma per agent step: 0.997 per emulator frame over 4 frames (Table 4)",
        lo=0.0,
        hi=1.0,
        lo_open=True,
    )


@dataclass(frozen=True)
class ModelConfig:
    """EfficientZero networks (spec A3, A4; paper App. H)."""

    size: str = _f(
        "ez",
        "'ez' = 1 residual block per stage of h; 'ez-l' = 4 (EfficientZero-L / XTRA, A3.2)",
        choices=("ez", "ez-l"),
    )
    num_channels: int = _f(64, "channels of the latent state (A3)", lo=1, hi=1024)
    reduced_channels: int = _f(
        16, "channels of the 1x1 convs before the heads (A3.3-A3.4)", lo=1, hi=256
    )
    head_hidden: int = _f(
        32, "hidden units of the value, policy and value-prefix MLPs (A3)", lo=1, hi=4096
    )
    lstm_hidden: int = _f(512, "value-prefix LSTM hidden size (A3.3)", lo=1, hi=4096)
    proj_hidden: int = _f(1024, "SimSiam projection hidden units (A3.5)", lo=1, hi=8192)
    proj_out: int = _f(1024, "SimSiam projection output units (A3.5)", lo=1, hi=8192)
    pred_hidden: int = _f(512, "SimSiam prediction-head hidden units (A3.5)", lo=1, hi=8192)
    support_size: int = _f(
        300, "value and value-prefix supports are -S..S, 2S+1 atoms (A4)", lo=1, hi=10000
    )
    action_encoding: str = _f(
        "plane",
        "action input of g: 'plane' = constant plane ale_id/18 (A3.3), or 'one_hot'",
        choices=("plane", "one_hot"),
    )
    policy_size: int = _f(
        18, "logits of the policy head: the full ALE action set, sliced per game (B2)", lo=1, hi=18
    )
    init_zero: bool = _f(
        True, "zero the last layer of the value, policy and value-prefix heads (A3.4)"
    )
    transform_eps: float = _f(
        0.001, "epsilon of h(x) = sign(x)(sqrt(|x|+1)-1) + eps*x (A4)", lo=0.0, hi=1.0, lo_open=True
    )
    faithful_transform: bool = _f(
        False, "use XTRA's buggy h(x) with eps*x inside the sign (A4, D-XT-3)"
    )
    norm: str = _f(
        "batch",
        "normalisation layers: 'batch' (BatchNorm, A3; eval mode uses running statistics) or "
        "'layer' (per-sample LayerNorm/GroupNorm(1): no running statistics, so search and "
        "evaluation see the network that trained; LightZero's norm_type='LN')",
        choices=("batch", "layer"),
    )
    channels_last: bool = _f(
        False,
        "store the convolutions' weights channels-last (NHWC), the layout PyTorch then computes "
        "in; results differ from NCHW by float rounding only (on in the cpu preset: 1.18x the "
        "learner steps/s on one 2-core CPU, 0.99x on another; benchmarks/RESULTS.md)",
    )

    @property
    def repr_blocks(self) -> int:
        """Residual blocks per stage of the representation network (A3.1, A3.2)."""
        return {"ez": 1, "ez-l": 4}[self.size]


@dataclass(frozen=True)
class SearchConfig:
    """Batched MCTS (spec A5)."""

    num_simulations: int = _f(50, "simulations per search (Table 4)", lo=1, hi=10000)
    c1: float = _f(1.25, "pUCT c_1 (A5)", lo=0.0)
    c2: float = _f(19652.0, "pUCT c_2 (A5)", lo=0.0, lo_open=True)
    dirichlet_alpha: float = _f(
        0.3, "root Dirichlet noise alpha (Table 4 'xi'; A5)", lo=0.0, lo_open=True
    )
    exploration_fraction: float = _f(
        0.25, "weight of the Dirichlet noise in the root prior (A5)", lo=0.0, hi=1.0
    )
    value_delta_max: float = _f(0.01, "floor on the min-max range used to normalise Q (A5)", lo=0.0)
    lstm_horizon: int = _f(
        5, "value-prefix LSTM is reset every this many tree levels (Table 4 'zeta')", lo=1, hi=1000
    )
    tie_break: str = _f(
        "random",
        "ties in pUCT: 'random' (seeded, EZ) or 'lowest' index (fully deterministic)",
        choices=("random", "lowest"),
    )
    faithful_minmax_parent: bool = _f(
        False, "reproduce D-EZ-1: min-max statistics use the wrong parent value prefix"
    )
    faithful_parent_q_leak: bool = _f(
        False, "reproduce D-EZ-2: the root mean-Q leaks across roots of a batch"
    )
    cuda_graphs: bool = _f(
        True,
        "on a GPU, replay the network's recurrent step from CUDA graphs (one per batch-size "
        "bucket): the same numbers with a fraction of the kernel-launch time; no effect on CPU",
    )
    temperatures: tuple = _f((1.0, 0.5, 0.25), "visit-count softmax temperatures for acting (A6.1)")
    action_selection: str = _f(
        "visits",
        "how self-play picks an action from its search: 'visits' (EZ: visit counts at the "
        "temperature) or 'improved_policy' (a draw from the completed-Q improved policy, Gumbel "
        "MuZero's choice without sequential halving; the temperature is not used)",
        choices=("visits", "improved_policy"),
    )
    temperature_progress: bool = _f(
        False,
        "temperature_steps are fractions of the run (training steps done, or the share of a "
        "time budget spent, whichever is further) instead of training steps",
    )
    temperature_steps: tuple = _f(
        (50000, 75000), "training steps at which the temperature drops (A6.1; XTRA: 60k, 90k)"
    )


@dataclass(frozen=True)
class ReplayConfig:
    """Trajectory storage and prioritized replay (spec A2, A6.2)."""

    capacity: int = _f(1_000_000, "transitions kept (EZ never evicts in the 100k setting)", lo=1)
    alpha: float = _f(0.6, "priority exponent (Table 4)", lo=0.0, hi=1.0)
    beta_start: float = _f(0.4, "importance-weight exponent at step 0 (Table 4)", lo=0.0, hi=1.0)
    beta_end: float = _f(
        1.0, "importance-weight exponent at the last training step (Table 4)", lo=0.0, hi=1.0
    )
    priority_eps: float = _f(1e-6, "added to |v - z| to form a priority (A6.2)", lo=0.0)
    start_transitions: int = _f(
        2000, "collect this many transitions before training starts (Table 4)", lo=1
    )
    segment_length: int = _f(
        400,
        "self-play stores a running trajectory every this many steps, overlapping the next piece "
        "by targets.unroll_steps + targets.td_steps unsampled steps (EZ's 400-step blocks, A2); 0 = whole "
        "trajectories only",
        lo=0,
    )
    jpeg: bool = _f(
        False, "store frames as JPEG like the reference (lossy); default lossless (decision 7)"
    )
    jpeg_quality: int = _f(95, "JPEG quality when jpeg is on (OpenCV default, A1)", lo=1, hi=100)


@dataclass(frozen=True)
class TargetsConfig:
    """What each sample is trained toward: the unroll, the n-step values and reanalysis (A6.4)."""

    unroll_steps: int = _f(5, "K, unrolled dynamics steps per sample (Table 4)", lo=1, hi=50)
    td_steps: int = _f(5, "n of the n-step value target (Table 4)", lo=1, hi=100)
    auto_td_steps: int = _f(
        30000,
        "off-policy correction: n = clip(td_steps - floor(age / this), 1, td_steps) (A6.4)",
        lo=1,
    )
    reanalyze_ratio: float = _f(
        1.0,
        "fraction of policy targets from a fresh search with the target net (Table 4: 1.0; EZ 0.99)",
        lo=0.0,
        hi=1.0,
    )
    reanalyze_noise: bool = _f(
        True,
        "Dirichlet noise at the roots of the reanalysis search (EZ: on, A6.4); off gives sharper "
        "targets with few simulations",
    )
    policy_target: str = _f(
        "visits",
        "reanalysed policy targets: normalised root 'visits' (EZ, A6.4) or the 'completed_q' "
        "improved policy softmax(logits + sigma(completed Q)) (Danihelka et al. 2022), which "
        "is not quantised by few simulations",
        choices=("visits", "completed_q"),
    )
    value_bootstrap: str = _f(
        "network",
        "value of the bootstrap state s_{t+n}: the target network's 'network' value (EZ default, "
        "A6.4) or the 'root' value of a search from it (EZ's use_root_value)",
        choices=("network", "root"),
    )


@dataclass(frozen=True)
class LossConfig:
    """The objective's weights and the observation augmentation (spec A7; Table 4)."""

    value_coeff: float = _f(0.25, "lambda_2 (Table 4)", lo=0.0)
    policy_coeff: float = _f(1.0, "lambda_1 (Table 4)", lo=0.0)
    consistency_coeff: float = _f(2.0, "lambda_3 (Table 4)", lo=0.0)
    reward_coeff: float = _f(1.0, "value-prefix loss coefficient (A7)", lo=0.0)
    latent_grad_scale: float = _f(
        0.5, "gradient into each unrolled latent is scaled by this (A7)", lo=0.0, hi=1.0
    )
    loss_masks: bool = _f(
        True, "mask losses past the trajectory end (EZ HEAD; XTRA code has none, B1)"
    )
    augment_shift: int = _f(
        4, "random shift of up to this many pixels, replicate padding (A7)", lo=0, hi=32
    )
    augment_intensity: float = _f(0.05, "intensity augmentation scale (A7)", lo=0.0)
    predict_consistency_targets: bool = _f(
        True,
        "run the prediction network f on the consistency targets' representation latents too "
        "(outputs unused), so f's BatchNorm statistics see them as in EZ, whose target branch is "
        "initial_inference (A7.4)",
    )


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser (SGD or Adam), its learning-rate schedule and the batch (spec A7; Table 4)."""

    optimizer: str = _f(
        "sgd",
        "'sgd' (EfficientZero's, Table 4) or 'adam' (Adam with PyTorch's default betas, as "
        "LightZero's EfficientZero configs for small control tasks use; momentum unused)",
        choices=("sgd", "adam"),
    )
    batch_size: int = _f(
        256,
        "samples per step of the stage's main data: the target game (train, finetune; Table 4), "
        "or all datasets together (teacher, distill)",
        lo=1,
    )
    lr: float = _f(0.2, "peak learning rate (Table 4: SGD's 0.2)", lo=0.0, lo_open=True)
    momentum: float = _f(0.9, "SGD momentum (Table 4)", lo=0.0, hi=1.0)
    weight_decay: float = _f(1e-4, "SGD weight decay c (Table 4)", lo=0.0)
    warmup_steps: int = _f(1000, "linear learning-rate warm-up (A7)", lo=0)
    lr_decay_steps: int = _f(
        100000, "lr is multiplied by lr_decay_rate every this many steps after warm-up (A7)", lo=1
    )
    lr_decay_rate: float = _f(
        0.1,
        "step decay factor: 0.2 -> 0.02 (Table 4); with 'cosine', the share of lr left at the end",
        lo=0.0,
        hi=1.0,
        lo_open=True,
    )
    lr_schedule: str = _f(
        "step",
        "after warm-up, 'step' (A7.7: x lr_decay_rate every lr_decay_steps) or 'cosine' (half a "
        "cosine from lr to lr * lr_decay_rate over the run: its training steps or its "
        "--max-minutes, whichever ends it; Loshchilov and Hutter, ICLR 2017)",
        choices=("step", "cosine"),
    )
    max_grad_norm: float = _f(5.0, "gradient clipping norm (Table 4)", lo=0.0, lo_open=True)
    amp: str = _f(
        "auto",
        "mixed precision: 'auto' (on for CUDA), 'on' or 'off'",
        choices=("auto", "on", "off"),
    )


@dataclass(frozen=True)
class ScheduleConfig:
    """The run's length and its periodic events (spec A8; Table 4)."""

    training_steps: int = _f(
        120000, "learner steps: 100K with data collection + 20K without (Table 4; A8)", lo=1
    )
    env_steps: int = _f(100000, "agent-step budget of the target game (Atari100k)", lo=1)
    target_update_interval: int = _f(
        200, "training steps between target-network rotations (Table 4)", lo=1
    )
    selfplay_update_interval: int = _f(
        100, "training steps between acting-network refreshes (Table 4)", lo=1
    )
    checkpoint_interval: int = _f(
        10000, "training steps between checkpoints; a run resumes from the last one (A8)", lo=1
    )
    log_interval: int = _f(100, "training steps between metric rows (CSV, TensorBoard)", lo=1)
    env_steps_per_update: float = _f(
        1.0,
        "replay ratio: agent steps of self-play per training step (A8: 1); above 1 the run sees "
        "more data per update, below 1 it trains more on each transition",
        lo=0.0,
        lo_open=True,
    )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (spec A9)."""

    num_episodes: int = _f(32, "episodes per evaluation, seeds 0..num_episodes-1 (Table 4)", lo=1)
    interval: int = _f(10000, "training steps between periodic evaluations (A9)", lo=1)
    periodic_max_steps: int = _f(3000, "agent-step cap of a periodic evaluation episode (A9)", lo=1)
    final_max_steps: int = _f(
        27000, "agent-step cap of the final evaluation episode, 108K frames (A9)", lo=1
    )
    action_ties: str = _f(
        "lowest",
        "equal visit counts: 'lowest' slot (EZ, A9) or the higher 'prior' (few simulations)",
        choices=("lowest", "prior"),
    )


@dataclass(frozen=True)
class TransferConfig:
    """Cross-task pretraining and finetuning (spec B2-B10; paper Eq. 1-2, App. B, D)."""

    offline_batch_size: int = _f(
        256, "offline samples per step, split evenly over the offline games (Table 4; App. D)", lo=0
    )
    task_weights: bool = _f(
        True, "re-weight offline games by gradient agreement (Eq. 2); off = 'w/o task weights'"
    )
    task_weight_start: int = _f(10000, "first training step of a measurement window (App. B)", lo=0)
    task_weight_cycle: int = _f(5000, "T: steps per re-weighting cycle (B7)", lo=1)
    task_weight_window: int = _f(500, "N: measured steps at the start of each cycle (B7)", lo=1)
    task_weight_samples: int = _f(
        0,
        "samples of each game per measurement: 0 = the step's own batch (App. B); N > 0 = N "
        "fresh samples of every game, drawn on a stream of their own (ours: a few samples per "
        "game measure only noise, benchmarks/RESULTS.md 'What a measurement can see')",
        lo=0,
    )
    similarity_threshold: float = _f(
        0.1, "a measurement counts when cos(G_target, G_i) exceeds this (Eq. 4)", lo=-1.0, hi=1.0
    )
    weight_smoothing: float = _f(
        1.0, "eta = (smoothing + count) / (smoothing + measurements) (B7)", lo=0.0
    )
    weight_rounding: float = _f(
        0.01,
        "task weights are rounded to this step as the code does (B7.2); 0 = no rounding",
        lo=0.0,
        hi=1.0,
    )
    task_weight_estimator: str = _f(
        "per_step",
        "'per_step': the paper's rule, the fraction of measured steps with cos > threshold "
        "(Eq. 2, 4; App. B); 'accumulated': the cosine of the gradients summed over the window, "
        "relative to the target's own noise floor (ours; robust at small batches)",
        choices=("per_step", "accumulated"),
    )
    loss_combination: str = _f(
        "mean",
        "'mean' over the combined batch (code, decision 3) or 'eq1' (target mean + sum eta_i * game mean)",
        choices=("mean", "eq1"),
    )
    offline_value_target: str = _f(
        "n_step",
        "'n_step' (EZ-consistent) or 'xtra_as_coded' (D-XT-4) for offline samples (decision 2)",
        choices=("n_step", "xtra_as_coded"),
    )
    offline_targets: str = _f(
        "data",
        "finetune: targets of offline samples: 'data' (stored visits and root values, XTRA's "
        "code, decision 2), 'reanalyze' (a fresh search of the run's target network, MuZero "
        "Reanalyze on the offline data; ours) or 'teacher' (the source game's frozen teacher, as "
        "in distillation; ours, needs --offline-teacher)",
        choices=("data", "reanalyze", "teacher"),
    )
    separate_batchnorm: bool = _f(
        False,
        "finetune: the target's samples and the offline samples go through the network in two "
        "passes, so BatchNorm normalises each with its own batch statistics and only the "
        "target's pass moves the running statistics that search uses (ours); false = one pass "
        "over the mixed batch (XTRA's code, spec B6)",
    )
    teacher_noise: bool = _f(
        False, "Dirichlet noise in the teachers' searches during distillation (decision 5)"
    )
    teacher_simulations: int = _f(
        0,
        "simulations of the teachers' searches during distillation; 0 = each teacher's own "
        "search.num_simulations (spec B10.3: 50)",
        lo=0,
        hi=10000,
    )
    distill_targets: str = _f(
        "teacher",
        "distill: targets from the frozen 'teacher's (XTRA), the student's own reanalysis "
        "('self', multi-game offline RL) or the data's actions ('bc'); --targets",
        choices=("teacher", "self", "bc"),
    )
    eval_policy: str = _f(
        "auto",
        "distill: how the student acts in evaluations: 'search', 'prior' (the policy head's "
        "argmax) or 'auto' (prior for bc, search otherwise); --eval-policy",
        choices=("auto", "search", "prior"),
    )
    policy_softmax: str = _f(
        "legal",
        "distill and finetune: the policy loss of offline samples is a softmax over their game's "
        "'legal' ids or over 'all' 18 outputs (XTRA's multi-game code, B2); --policy-softmax",
        choices=("legal", "all"),
    )
    use_pretraining: bool = _f(
        True, "finetune starts from the pretrained model; off = random init ('w/o pretraining')"
    )
    use_offline: bool = _f(
        True, "finetune trains on the offline datasets too; off = 'w/o cross-task'"
    )
    components: str = _f(
        "all",
        "finetune: components loaded from the pretrained model: h, hg, hgf or all (spec B3); "
        "--transfer",
        choices=("h", "hg", "hgf", "all"),
    )
    freeze: tuple = _f(
        (),
        "finetune: components kept fixed (e.g. [representation], the frozen-h ablation); --freeze",
    )


_SECTIONS = {
    "env": EnvConfig,
    "model": ModelConfig,
    "search": SearchConfig,
    "replay": ReplayConfig,
    "targets": TargetsConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "eval": EvalConfig,
    "transfer": TransferConfig,
}

RENAMED_FIELDS = {
    **{
        f"replay.{name}": f"targets.{name}"
        for name in ("unroll_steps", "td_steps", "auto_td_steps", "reanalyze_ratio")
    },
    **{
        f"optim.{name}": f"loss.{name}"
        for name in (
            "value_coeff",
            "policy_coeff",
            "consistency_coeff",
            "reward_coeff",
            "latent_grad_scale",
            "loss_masks",
            "augment_shift",
            "augment_intensity",
        )
    },
    **{
        f"optim.{name}": f"schedule.{name}"
        for name in (
            "training_steps",
            "env_steps",
            "target_update_interval",
            "selfplay_update_interval",
            "checkpoint_interval",
            "log_interval",
        )
    },
}
"""Fields moved by the redesign (old dotted name -> new). Config files, run directories and
``--set`` arguments written with an old name still work: the value goes to the new field."""


@dataclass(frozen=True)
class Config:
    """Everything a run needs besides its game(s); written to ``config.yaml`` in the run directory."""

    preset: str = _f("paper", "the preset this config started from", choices=PRESETS)
    seed: int = _f(0, "seed of every random generator of the run", lo=0)
    device: str = _f("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    @property
    def discount(self) -> float:
        """gamma per agent step (``env.discount``)."""
        return self.env.discount


# --------------------------------------------------------------------------- presets


def paper() -> Config:
    """The paper's hyper-parameters (Table 4; spec A10, B8)."""
    return validate(Config(preset="paper"))


def cpu() -> Config:
    """MinAtar-scale: a small network and search that learn in minutes on 2 CPU cores."""
    return validate(
        Config(
            preset="cpu",
            env=EnvConfig(max_episode_steps=2000, num_envs=8),
            model=ModelConfig(
                num_channels=16,
                reduced_channels=8,
                head_hidden=32,
                lstm_hidden=32,
                proj_hidden=128,
                proj_out=128,
                pred_hidden=64,
                support_size=50,
                # The reference's single plane ale_id/18 barely separates NOOP (0) from FIRE
                # (1/18): small networks then learn dynamics that ignore the action.
                action_encoding="one_hot",
                # NHWC convolutions: the same function, 1.18x the learner steps/s on this
                # project's 2-core machine, 0.99x on an earlier one (benchmarks/RESULTS.md,
                # "The convolutions' memory format, again").
                channels_last=True,
            ),
            # The temperature drops at half and three quarters of the run (steps 10k and 15k of
            # the full 20k), also when --max-minutes or a smaller training_steps ends it early:
            # acting at temperature 1 throughout cost Space Invaders 1.4 points in 10 minutes
            # (benchmarks/RESULTS.md, "Temperature relative to the run", 3 seeds).
            search=SearchConfig(
                num_simulations=8, temperature_progress=True, temperature_steps=(0.5, 0.75)
            ),
            # Half of the policy targets from a fresh search: the search is most of a step's cost.
            # 100-step pieces: Freeway's 2,000-step episodes would otherwise reach the replay
            # only when they end.
            replay=ReplayConfig(start_transitions=500, segment_length=100),
            targets=TargetsConfig(auto_td_steps=6000, reanalyze_ratio=0.5),
            # 10x10 frames: EZ's 4-pixel shift would move objects by 40% of the frame.
            loss=LossConfig(augment_shift=0, predict_consistency_targets=False),
            # Adam at LightZero's small-task rate: in 10 minutes Breakout 4.10 against SGD's 1.94
            # (paired +2.17, 95% CI 1.19-3.06), Space Invaders 11.65 against 9.33 (+2.31, CI
            # -1.06-8.75); benchmarks/RESULTS.md, "Adam instead of SGD", 3 seeds.
            optim=OptimConfig(
                optimizer="adam", batch_size=32, lr=0.003, warmup_steps=200, lr_decay_steps=20000
            ),
            schedule=ScheduleConfig(
                training_steps=20000,
                env_steps=20000,
                target_update_interval=100,
                selfplay_update_interval=50,
                checkpoint_interval=2000,
            ),
            # 8 simulations over 3-6 actions tie often; EZ's lowest slot is then always NOOP.
            eval=EvalConfig(
                num_episodes=16,
                interval=1000,
                periodic_max_steps=1000,
                final_max_steps=2000,
                action_ties="prior",
            ),
            # One BatchNorm pass over target and offline rows sinks the target's values at this
            # size (benchmarks/RESULTS.md, "Separate BatchNorm passes", 5 seeds). One mean over
            # the mixed batch halves the target's gradient once the offline weights fall; Eq. 1
            # keeps it whole ("The target's full loss weight", 5 seeds).
            transfer=TransferConfig(
                offline_batch_size=32,
                task_weight_start=2000,
                task_weight_cycle=1000,
                task_weight_window=100,
                separate_batchnorm=True,
                loss_combination="eq1",
            ),
        )
    )


def tiny() -> Config:
    """Minutes per full run on one core (tests shorten it): for tests and smoke checks on toy
    environments."""
    return validate(
        Config(
            preset="tiny",
            env=EnvConfig(max_episode_steps=200, num_envs=4),
            model=ModelConfig(
                num_channels=8,
                reduced_channels=4,
                head_hidden=16,
                lstm_hidden=16,
                proj_hidden=32,
                proj_out=32,
                pred_hidden=16,
                support_size=10,
                # As in `cpu`: the toy games' RIGHT (3) and LEFT (4) differ by 1/18 of a single
                # plane (benchmarks/RESULTS.md, "The tiny preset's action input": toy/chain 5 of 5
                # seeds at the optimum with one-hot planes, 4 of 5 with the plane).
                action_encoding="one_hot",
                # BatchNorm's running statistics drifted from the trained network late in longer
                # runs (toy/chain 3 of 5 seeds at the optimum at 1,200 updates, 5 of 5 with
                # LayerNorm; benchmarks/RESULTS.md, "Layer normalisation instead of BatchNorm").
                norm="layer",
            ),
            # 16 simulations: with 8 over 3 moves, toy/catch's seeds 2 and 4 ended with a paddle
            # that runs to the right edge whatever the ball does; with 16 all 5 seeds catch
            # every ball (benchmarks/RESULTS.md, "toy/catch's failed seeds").
            search=SearchConfig(
                num_simulations=16, temperature_progress=True, temperature_steps=(0.5, 0.75)
            ),
            replay=ReplayConfig(start_transitions=64, segment_length=0),
            targets=TargetsConfig(auto_td_steps=1000),
            loss=LossConfig(augment_shift=0, predict_consistency_targets=False),
            # Adam over 1,200 updates: SGD's 400 leave toy/catch unlearnt (0 of 5 seeds), and on
            # a second machine toy/chain's seed 0 too (benchmarks/RESULTS.md, "The CI check on
            # this machine").
            optim=OptimConfig(
                optimizer="adam", batch_size=32, lr=0.003, warmup_steps=20, lr_decay_steps=10000
            ),
            schedule=ScheduleConfig(
                training_steps=1200,
                env_steps=1200,
                target_update_interval=20,
                selfplay_update_interval=10,
                checkpoint_interval=200,
                log_interval=20,
            ),
            eval=EvalConfig(
                num_episodes=8,
                interval=200,
                periodic_max_steps=200,
                final_max_steps=200,
                action_ties="prior",
            ),
            transfer=TransferConfig(
                offline_batch_size=32,
                task_weight_start=100,
                task_weight_cycle=100,
                task_weight_window=10,
            ),
        )
    )


_PRESET_FNS = {"paper": paper, "cpu": cpu, "tiny": tiny}


def preset(name: str) -> Config:
    """The named preset; raises :class:`ConfigError` for an unknown name."""
    if name not in _PRESET_FNS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return _PRESET_FNS[name]()


# --------------------------------------------------------------------------- validation


def validate(cfg: Config) -> Config:
    """Check every field's type and range; raise :class:`ConfigError` naming the first bad one."""
    for path, value, f in _walk(cfg):
        meta = f.metadata
        if not meta:
            continue
        choices, lo, hi = meta.get("choices"), meta.get("lo"), meta.get("hi")
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{path}={value!r} is not allowed: choose one of {', '.join(map(str, choices))}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{path}={value} must be a finite number")
            lo_bad = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
            hi_bad = hi is not None and value > hi
            if lo_bad or hi_bad:
                raise ConfigError(f"{path}={value} is out of range: allowed {_range_text(meta)}")
    _check_relations(cfg)
    return cfg


def _range_text(meta: dict) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    left = "(" if meta.get("lo_open") else "["
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}]"


def _check_relations(cfg: Config) -> None:
    s = cfg.search
    if len(s.temperatures) != len(s.temperature_steps) + 1:
        raise ConfigError(
            f"search.temperatures has {len(s.temperatures)} values but search.temperature_steps has "
            f"{len(s.temperature_steps)}: give one more temperature than thresholds"
        )
    if any(t <= 0 for t in s.temperatures):
        raise ConfigError(f"search.temperatures={s.temperatures} must all be > 0")
    if list(s.temperature_steps) != sorted(s.temperature_steps):
        raise ConfigError(f"search.temperature_steps={s.temperature_steps} must be increasing")
    if s.temperature_progress and any(not 0 <= x <= 1 for x in s.temperature_steps):
        raise ConfigError(
            f"search.temperature_steps={s.temperature_steps} must be fractions in [0, 1] with "
            "search.temperature_progress=true"
        )
    if cfg.replay.beta_end < cfg.replay.beta_start:
        raise ConfigError(
            f"replay.beta_end={cfg.replay.beta_end} is below replay.beta_start={cfg.replay.beta_start}: beta anneals upward"
        )
    t = cfg.transfer
    if t.task_weight_window > t.task_weight_cycle:
        raise ConfigError(
            f"transfer.task_weight_window={t.task_weight_window} exceeds transfer.task_weight_cycle="
            f"{t.task_weight_cycle}: the measurement window is part of the cycle"
        )
    bad = [
        c for c in t.freeze if c not in ("representation", "dynamics", "prediction", "projection")
    ]
    if bad:
        raise ConfigError(
            f"transfer.freeze={list(t.freeze)}: unknown component {bad[0]!r}; choose from "
            "representation, dynamics, prediction, projection"
        )
    dev = cfg.device
    if not (
        dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())
    ):
        raise ConfigError(f"device={dev!r} is not allowed: use auto, cpu, cuda or cuda:N")


def _walk(obj: Any, prefix: str = ""):
    """Yield (dotted path, value, dataclass field) for every leaf field."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from _walk(value, path + ".")
        else:
            yield path, value, f


# --------------------------------------------------------------------------- dict / YAML / overrides


def to_dict(cfg: Config) -> dict:
    """Nested plain dict (tuples become lists, as YAML writes them)."""

    def conv(v):
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def from_dict(data: dict, base: Config | None = None) -> Config:
    """Build a validated config from a nested dict; keys left out keep their value in ``base``.

    Without ``base``, the preset named by ``data['preset']`` (default ``paper``) is the base.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    if base is None:
        base = preset(str(data.get("preset", "paper")))
    flat = {}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"section {key!r} must be a mapping of fields, got {value!r}")
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    # A file written before the redesign names a moved field twice at most: its old name (with
    # the file's value) and, never, its new one. The new name wins when both are present.
    moved = {RENAMED_FIELDS[k]: v for k, v in flat.items() if k in RENAMED_FIELDS}
    flat = {k: v for k, v in flat.items() if k not in RENAMED_FIELDS}
    # A file that sets SGD's momentum but names no optimiser was written before `optim.optimizer`
    # existed (every run's config.yaml sets every field) and trained with SGD; without this, a
    # `cpu` run from then would read as Adam and resume an SGD checkpoint into Adam.
    if "optim.momentum" in flat and "optim.optimizer" not in flat:
        flat["optim.optimizer"] = "sgd"
    return apply_overrides(base, {**moved, **flat})


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return ``cfg`` with dotted fields replaced (``{"search.num_simulations": 16}``), validated."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, raw in overrides.items():
        key = RENAMED_FIELDS.get(key, key)
        parts = key.split(".")
        if (
            len(parts) == 1
            and parts[0] in {f.name for f in fields(Config)}
            and parts[0] not in _SECTIONS
        ):
            top[parts[0]] = _coerce(Config, parts[0], raw, key)
        elif len(parts) == 2 and parts[0] in _SECTIONS:
            cls = _SECTIONS[parts[0]]
            if parts[1] not in {f.name for f in fields(cls)}:
                raise ConfigError(
                    f"unknown field {key!r}: {parts[0]} has {', '.join(f.name for f in fields(cls))}"
                )
            sections.setdefault(parts[0], {})[parts[1]] = _coerce(cls, parts[1], raw, key)
        else:
            raise ConfigError(
                f"unknown field {key!r}: use SECTION.FIELD with SECTION one of {', '.join(_SECTIONS)}, "
                "or one of preset, seed, device"
            )
    for name, changes in sections.items():
        top[name] = replace(getattr(cfg, name), **changes)
    return validate(replace(cfg, **top))


def parse_set_args(items: list[str]) -> dict[str, Any]:
    """Parse ``["search.num_simulations=16", ...]`` into a dict; values are read as YAML scalars."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is malformed: write --set SECTION.FIELD=VALUE")
        key, _, text = item.partition("=")
        # Kept as text: _coerce reads it as YAML only when the field is not a string, so that
        # `--set optim.amp=on` stays "on" instead of YAML's boolean.
        out[key.strip()] = text.strip()
    return out


def _coerce(cls: type, name: str, value: Any, path: str) -> Any:
    hint = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        origin = next(a for a in typing.get_args(hint) if a is not type(None))
    if isinstance(value, str) and origin is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{path}={value!r} cannot be read as a value") from None
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "true",
                "false",
                "yes",
                "no",
                "on",
                "off",
                "1",
                "0",
            ):
                return value.lower() in ("true", "yes", "on", "1")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if origin is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if origin is tuple:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(
        f"{path}={value!r} has the wrong type: expected {getattr(origin, '__name__', origin)}"
    )


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (atomically) with each field's help as a comment."""
    atomic_write_text(path, dump_yaml(cfg))


def dump_yaml(cfg: Config) -> str:
    lines = ["# xtra resolved configuration (see `xtra config show --help`)"]
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            lines.append(f"{f.name}:")
            for g in fields(value):
                v = getattr(value, g.name)
                v = list(v) if isinstance(v, tuple) else v
                text = yaml.safe_dump({g.name: v}, default_flow_style=True, width=1000).strip()[
                    1:-1
                ]
                lines.append(f"  {text}  # {g.metadata['help']}")
        else:
            text = yaml.safe_dump({f.name: value}, default_flow_style=True).strip()[1:-1]
            lines.append(f"{text}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"


def load_yaml(path: str | Path, base: Config | None = None) -> Config:
    """Read a config YAML file (full or partial); clear one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist: check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML{where}: fix the syntax"
        ) from None
    if data is None:
        data = {}
    return from_dict(data, base)


def make_config(
    preset_name: str = "paper",
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Preset, then a YAML file, then ``--set`` overrides; each later source wins."""
    cfg = preset(preset_name)
    if config_file is not None:
        cfg = load_yaml(config_file, base=cfg)
    if overrides:
        if isinstance(overrides, list):
            overrides = parse_set_args(overrides)
        cfg = apply_overrides(cfg, overrides)
    return cfg


def field_help() -> list[tuple[str, Any, str]]:
    """(dotted name, default in the paper preset, help) for every field, for `xtra config fields`."""
    return [(p, v, f.metadata.get("help", "")) for p, v, f in _walk(Config())]


__all__ = [
    "Config",
    "EnvConfig",
    "ModelConfig",
    "SearchConfig",
    "ReplayConfig",
    "TargetsConfig",
    "LossConfig",
    "OptimConfig",
    "ScheduleConfig",
    "RENAMED_FIELDS",
    "EvalConfig",
    "TransferConfig",
    "PRESETS",
    "paper",
    "cpu",
    "tiny",
    "preset",
    "validate",
    "to_dict",
    "from_dict",
    "apply_overrides",
    "parse_set_args",
    "save_yaml",
    "dump_yaml",
    "load_yaml",
    "make_config",
    "field_help",
]
