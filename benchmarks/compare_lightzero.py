"""Another EfficientZero on the same MinAtar game, machine and minutes: LightZero's (issue 17).

Trains LightZero's EfficientZero (``lzero.entry.train_muzero``, policy ``efficientzero``) on a
MinAtar game for a wall-clock budget on one thread, then plays the final model on the same
evaluation protocol as ``benchmarks/learn_minatar.py``: episode i seeded i, no sticky actions,
a 2,000-step cap, greedy search. The uniform-random policy plays the same seeds for the z-score.

The settings follow xtra's ``cpu`` preset wherever LightZero has the same knob (network width
and depth, heads, supports, simulations, batch, Adam at 0.003, weight decay, unroll and TD
steps, discount, half the policy targets reanalysed, prioritised replay, one update per
collected transition, four stacked frames); the rest is LightZero's own default (fixed acting
temperature 0.25, whole-episode collection by 8 environments, no random warm-up). The
observation is MinAtar's native channel planes (xtra's ``cpu`` paints them into 3 colour
channels). Periodic evaluation is off, so all of LightZero's minutes go to collecting and
training; xtra's runs spend some of theirs on periodic evaluations.

LightZero pins ``numpy<2`` and ``gymnasium==0.28``, so it runs in an environment of its own,
without xtra. Its ``di-engine`` pins ``setuptools<=66.1.1``, which torch 2.13.0 cannot take, so
one ``pip install`` of both fails to resolve; torch first (the CPU build where the package
index has it), then LightZero, which replaces it with torch 2.12.1:

    python3.11 -m venv .venv-lightzero
    .venv-lightzero/bin/pip install torch==2.13.0
    .venv-lightzero/bin/pip install lightzero==0.2.0 minatar==1.0.15
    OMP_NUM_THREADS=1 .venv-lightzero/bin/python benchmarks/compare_lightzero.py \\
        --game breakout --minutes 25 --seed 0 --out runs/lightzero/breakout-s0.json

Prints one line and writes JSON (settings, updates, environment steps, scores).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from learn_minatar import z_score  # the same test as xtra's runs (no xtra import)

DISCOUNT = 0.997**4  # xtra's `cpu`: 0.997 per frame over 4 frames (Table 4)


class OutOfTime(Exception):
    """Raised inside LightZero's training loop when the wall-clock budget is spent."""


def minatar_env_class():
    """LightZero's environment interface over one MinAtar game (registered on first use)."""
    import gymnasium as gym
    import minatar
    from ding.envs import BaseEnv, BaseEnvTimestep
    from ding.utils import ENV_REGISTRY
    from easydict import EasyDict

    @ENV_REGISTRY.register("minatar_lightzero")
    class MinAtarEnv(BaseEnv):
        config = dict(game="breakout", max_episode_steps=2000)

        @classmethod
        def default_config(cls) -> EasyDict:
            cfg = EasyDict(copy.deepcopy(cls.config))
            cfg.cfg_type = cls.__name__ + "Dict"
            return cfg

        def __init__(self, cfg: dict) -> None:
            self._cfg = cfg
            self._env = minatar.Environment(cfg["game"], sticky_action_prob=0.0)
            self._actions = list(self._env.minimal_action_set())
            self._seed = 0
            self._dynamic = True
            self._rng = np.random.RandomState(0)
            self._observation_space = gym.spaces.Box(0, 1, self._shape(), np.float32)
            self._action_space = gym.spaces.Discrete(len(self._actions))
            self._reward_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

        def _shape(self) -> tuple[int, int, int]:
            h, w, c = self._env.state_shape()
            return (c, h, w)

        def _obs(self) -> dict:
            frame = np.transpose(self._env.state(), (2, 0, 1)).astype(np.float32)
            mask = np.ones(len(self._actions), "int8")
            return {"observation": frame, "action_mask": mask, "to_play": -1, "timestep": self._t}

        def reset(self) -> dict:
            seed = self._rng.randint(2**31) if self._dynamic else self._seed
            self._env.seed(int(seed))
            self._env.reset()
            self._t, self._return = 0, 0.0
            return self._obs()

        def step(self, action) -> BaseEnvTimestep:
            reward, terminal = self._env.act(self._actions[int(np.asarray(action).reshape(-1)[0])])
            self._t += 1
            self._return += reward
            done = bool(terminal) or self._t >= self._cfg["max_episode_steps"]
            info = {"eval_episode_return": self._return} if done else {}
            return BaseEnvTimestep(self._obs(), float(reward), done, info)

        def seed(self, seed: int, dynamic_seed: bool = True) -> None:
            self._seed, self._dynamic = seed, dynamic_seed
            self._rng = np.random.RandomState(seed)

        def close(self) -> None:
            pass

        @property
        def observation_space(self):
            return self._observation_space

        @property
        def action_space(self):
            return self._action_space

        @property
        def reward_space(self):
            return self._reward_space

        def __repr__(self) -> str:
            return f"MinAtarEnv({self._cfg['game']})"

    return MinAtarEnv


def lightzero_config(game: str, exp_name: str) -> tuple[dict, dict]:
    """LightZero's EfficientZero, sized like xtra's `cpu` preset (see the module docstring)."""
    import minatar
    from easydict import EasyDict

    probe = minatar.Environment(game, sticky_action_prob=0.0)
    h, w, c = probe.state_shape()
    n_actions = len(probe.minimal_action_set())
    stack = 4
    main = dict(
        exp_name=exp_name,
        env=dict(
            game=game,
            max_episode_steps=2000,
            stop_value=int(1e9),
            collector_env_num=8,
            evaluator_env_num=1,
            n_evaluator_episode=1,
            manager=dict(shared_memory=False),
        ),
        policy=dict(
            model=dict(
                observation_shape=[c * stack, h, w],
                image_channel=c,
                frame_stack_num=stack,
                action_space_size=n_actions,
                downsample=False,
                num_res_blocks=1,
                num_channels=16,
                reward_head_channels=8,
                value_head_channels=8,
                policy_head_channels=8,
                reward_head_hidden_channels=[32],
                value_head_hidden_channels=[32],
                policy_head_hidden_channels=[32],
                lstm_hidden_size=32,
                reward_support_size=101,
                value_support_size=101,
                support_scale=50,
                proj_hid=128,
                proj_out=128,
                pred_hid=64,
                pred_out=128,
                self_supervised_learning_loss=True,
                discrete_action_encoding_type="one_hot",
                norm_type="BN",
            ),
            cuda=False,
            env_type="not_board_games",
            game_segment_length=400,
            use_augmentation=False,
            use_priority=True,
            priority_prob_alpha=0.6,
            priority_prob_beta=0.4,
            replay_ratio=1.0,
            update_per_collect=None,
            batch_size=32,
            optim_type="Adam",
            piecewise_decay_lr_scheduler=False,
            learning_rate=0.003,
            weight_decay=1e-4,
            grad_clip_value=5,
            target_update_freq=100,
            num_simulations=8,
            reanalyze_ratio=0.5,
            discount_factor=DISCOUNT,
            td_steps=5,
            num_unroll_steps=5,
            lstm_horizon_len=5,
            value_loss_weight=0.25,
            ssl_loss_weight=2,
            n_episode=8,
            eval_freq=int(1e9),
            replay_buffer_size=int(1e6),
            collector_env_num=8,
            evaluator_env_num=1,
        ),
    )
    create = dict(
        env=dict(type="minatar_lightzero", import_names=[]),
        env_manager=dict(type="base"),
        policy=dict(type="efficientzero", import_names=["lzero.policy.efficientzero"]),
    )
    return EasyDict(main), EasyDict(create)


def train(game: str, seed: int, minutes: float, exp_name: str) -> tuple[object, dict]:
    """LightZero's `train_muzero` until `minutes` of wall clock; returns (policy, counts)."""
    import importlib

    from ding.worker import BaseLearner

    # The module, not the function of the same name that `lzero.entry` exports over it.
    entry = importlib.import_module("lzero.entry.train_muzero")

    minatar_env_class()
    seen: dict = {"updates": 0}
    deadline = time.monotonic() + minutes * 60
    make_policy, make_collector = entry.create_policy, entry.Collector
    step = BaseLearner.train

    def create_policy(*args, **kwargs):
        seen["policy"] = make_policy(*args, **kwargs)
        return seen["policy"]

    def collector(*args, **kwargs):
        seen["collector"] = make_collector(*args, **kwargs)
        return seen["collector"]

    def timed_step(self, *args, **kwargs):
        if time.monotonic() > deadline:
            raise OutOfTime
        seen["updates"] += 1
        return step(self, *args, **kwargs)

    entry.create_policy, entry.Collector, BaseLearner.train = create_policy, collector, timed_step
    start = time.monotonic()
    try:
        entry.train_muzero(list(lightzero_config(game, exp_name)), seed=seed)
    except OutOfTime:
        pass
    finally:
        entry.create_policy, entry.Collector, BaseLearner.train = make_policy, make_collector, step
    return seen["policy"], {
        "updates": seen["updates"],
        "env_steps": int(seen["collector"].envstep),
        "wall_s": time.monotonic() - start,
    }


def play(game: str, episodes: int, max_steps: int, act) -> np.ndarray:
    """Scores [E] of `episodes` MinAtar games, episode i seeded i, all stepped together;
    ``act(stacks [N, 4, C, H, W] float32, ids [N]) -> actions [N]``."""
    import minatar

    envs = [minatar.Environment(game, sticky_action_prob=0.0) for _ in range(episodes)]
    actions = list(envs[0].minimal_action_set())
    stacks = []
    for i, env in enumerate(envs):
        env.seed(i)
        env.reset()
        first = np.transpose(env.state(), (2, 0, 1)).astype(np.float32)
        stacks.append([first] * 4)  # LightZero pads a new episode with its first frame
    scores = np.zeros(episodes)
    live = list(range(episodes))
    for _ in range(max_steps):
        if not live:
            break
        chosen = act(np.array([stacks[i] for i in live]), live)
        still = []
        for i, a in zip(live, chosen):
            reward, terminal = envs[i].act(actions[int(a)])
            scores[i] += reward
            stacks[i] = stacks[i][1:] + [
                np.transpose(envs[i].state(), (2, 0, 1)).astype(np.float32)
            ]
            if not terminal:
                still.append(i)
        live = still
    return scores


def search_policy(policy, n_actions: int):
    """LightZero's evaluation search (greedy over visits) as a batched act function."""
    import torch

    def act(stacks: np.ndarray, ids: list[int]) -> list[int]:
        n, s, c, h, w = stacks.shape
        obs = torch.from_numpy(stacks.reshape(n, s * c, h, w))
        out = policy.eval_mode.forward(
            obs,
            [np.ones(n_actions, "int8")] * n,
            [-1] * n,
            ready_env_id=np.arange(n),
            timestep=[0] * n,
        )
        return [out[j]["action"] for j in range(n)]

    return act


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--game", default="breakout", help="MinAtar game: breakout, space_invaders, ...")
    p.add_argument("--minutes", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=32, help="final evaluation episodes")
    p.add_argument("--max-steps", type=int, default=2000, help="step cap per evaluation episode")
    p.add_argument("--runs", default="runs/lightzero", help="LightZero's experiment folders")
    p.add_argument("--out", default="benchmarks/out/compare_lightzero.json")
    args = p.parse_args()
    try:
        import lzero  # noqa: F401
    except ImportError:
        raise SystemExit(
            "error: LightZero is not installed here; create its own environment first "
            "(see `python benchmarks/compare_lightzero.py --help`)"
        ) from None
    import torch

    torch.set_num_threads(1)
    exp_name = str(Path(args.runs) / f"{args.game}-s{args.seed}")
    policy, counts = train(args.game, args.seed, args.minutes, exp_name)
    import minatar

    n_actions = len(minatar.Environment(args.game).minimal_action_set())
    scores = play(args.game, args.episodes, args.max_steps, search_policy(policy, n_actions))
    rng = np.random.default_rng(args.seed)
    rand = play(
        args.game,
        args.episodes,
        args.max_steps,
        lambda stacks, ids: rng.integers(n_actions, size=len(ids)),
    )
    z = z_score(scores, rand)
    result = {
        "command": " ".join(sys.argv),
        "implementation": "LightZero 0.2.0 EfficientZero",
        "game": f"minatar/{args.game}",
        "seed": args.seed,
        "minutes": args.minutes,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **counts,
        "final_episodes": args.episodes,
        "final_mean": float(scores.mean()),
        "final_std": float(scores.std()),
        "scores": scores.tolist(),
        "random_mean": float(rand.mean()),
        "z_vs_random": z,
        "beats_random": bool(z > 3),
        "config": json.loads(json.dumps(lightzero_config(args.game, exp_name)[0])),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"minatar/{args.game} seed {args.seed} LightZero: random {rand.mean():.2f}, final "
        f"{scores.mean():.2f} ({args.episodes} episodes) after {counts['env_steps']} env steps / "
        f"{counts['updates']} updates ({counts['wall_s'] / 60:.1f} min), z = {z:.1f}; wrote {out}"
    )


if __name__ == "__main__":
    main()
