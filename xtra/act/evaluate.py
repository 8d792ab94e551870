"""The evaluation protocol (spec A9), for any acting rule, and the evaluation of saved models.

E episodes on environment seeds 0..E-1, played in lock-step; no life-loss termination; the score
of an episode is its raw (unclipped) return; an episode stops at the step cap (3,000 steps for
periodic and 27,000 for final evaluations with the paper's numbers). One ``policy`` switch picks
the acting rule:

* ``search``: MCTS without Dirichlet noise, the most visited root child (lowest slot on ties, or
  the higher prior with ``action_ties="prior"``): the agent's score;
* ``prior``: no search, the argmax of the policy head over the game's legal ids (lowest id on
  ties): how behaviour cloning acts (Table 1's BC column);
* ``random``: uniform random legal actions: the baseline learning curves are compared against.

A model evaluated on a game it never saw (Table 1's zero-shot columns; B10.6) slices its 18-way
head to the game's legal ALE ids like any other (spec B2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xtra import seeds
from xtra.act.planner import Planner
from xtra.act.select import select_action
from xtra.config import Config, EnvConfig, apply_overrides, load_yaml, parse_set_args
from xtra.device import resolve_device
from xtra.envs import make_env
from xtra.errors import CheckpointError, ConfigError, XtraError
from xtra.model.networks import legal_logits
from xtra.rundir import load_model
from xtra.search import search_kwargs

POLICIES = ("search", "prior", "random")


@dataclass
class EvalResult:
    game: str
    scores: np.ndarray  # [E] raw return of each episode
    lengths: np.ndarray  # [E] agent steps of each episode

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))

    def summary(self) -> dict[str, float]:
        return {
            "mean": self.mean,
            "std": self.std,
            "min": float(np.min(self.scores)),
            "max": float(np.max(self.scores)),
            "median": float(np.median(self.scores)),
            "mean_length": float(np.mean(self.lengths)),
            "episodes": float(len(self.scores)),
        }


ActFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``act(obs [M, S*C, H, W], legal_actions [A]) -> local actions [M]`` for the M unfinished episodes."""


def play_episodes(
    game: str, env_cfg: EnvConfig, act: ActFn, *, max_steps: int, num_episodes: int
) -> EvalResult:
    """Spec A9's protocol for any acting rule: E episodes on seeds 0..E-1 in lock-step, no
    life-loss termination, raw scores, the step cap; finished episodes stop asking ``act``."""
    env = make_env(
        game, env_cfg, num_envs=num_episodes, seed=0, mode="eval", max_episode_steps=max_steps
    )
    try:
        obs = env.reset(seeds=list(range(num_episodes)))
        scores = np.zeros(num_episodes)
        lengths = np.zeros(num_episodes, dtype=np.int64)
        done = np.zeros(num_episodes, dtype=bool)
        actions = np.zeros(num_episodes, dtype=np.int64)
        while not done.all():
            active = np.flatnonzero(~done)
            actions[active] = act(obs[active], env.legal_actions)
            step = env.step(actions)
            finished = step.game_over & ~done
            scores[finished] = step.episode_return[finished]
            lengths[finished] = step.episode_length[finished]
            done |= step.game_over
            obs = step.obs
    finally:
        env.close()
    return EvalResult(game=env.game, scores=scores, lengths=lengths)


def evaluation_kwargs(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of :func:`evaluate` that a run's config fixes (its protocol)."""
    return {
        "env_cfg": cfg.env,
        "num_episodes": cfg.eval.num_episodes,
        "search_kwargs": search_kwargs(cfg.search, cfg.discount),
        "cuda_graphs": cfg.search.cuda_graphs,
        "action_ties": cfg.eval.action_ties,
        "seed": cfg.seed,
    }


def evaluate(
    model: torch.nn.Module | None,
    game: str,
    *,
    policy: str = "search",
    env_cfg: EnvConfig,
    max_steps: int,
    num_episodes: int,
    device: torch.device | str = "cpu",
    search_kwargs: dict[str, Any] | None = None,
    cuda_graphs: bool = True,
    action_ties: str = "lowest",
    seed: int = 0,
    amp: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on ``game`` with the acting rule ``policy`` (module docstring).

    ``search_kwargs``: the search's settings (``search`` only). ``seed``: seeds the tie-breaks
    inside the search and the random policy's actions (the environments always use seeds
    0..E-1). ``model`` may be None for ``random``."""
    if policy not in POLICIES:
        raise XtraError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    device = torch.device(device)
    if policy == "random":
        rng = np.random.default_rng(seeds.stream(seed, seeds.RANDOM_POLICY))

        def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
            return rng.integers(len(legal), size=len(obs))

    elif policy == "prior":
        planner = Planner(model, device, search_kwargs={}, amp=amp, cuda_graphs=False)

        def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
            out = planner.root_inference(obs)
            return legal_logits(out.policy_logits.float(), legal).argmax(dim=1).cpu().numpy()

    else:
        if search_kwargs is None:
            raise XtraError("the search policy needs search_kwargs")
        planner = Planner(
            model, device, search_kwargs=search_kwargs, amp=amp, cuda_graphs=cuda_graphs
        )
        # Tie-breaks inside the search are random in EZ's evaluation too; seed them.
        rng = np.random.default_rng(seeds.stream(seed, seeds.EVALUATION))

        def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
            plan = planner.plan(obs, legal, add_noise=False, rng=rng)
            ties = plan.prior_logits if action_ties == "prior" else None
            return select_action(plan.visit_counts, 1.0, rng, deterministic=True, tie_scores=ties)

    return play_episodes(game, env_cfg, act, max_steps=max_steps, num_episodes=num_episodes)


def evaluate_saved_model(
    model_path: str | Path,
    game: str,
    *,
    episodes: int | None = None,
    max_steps: int | None = None,
    policy: str = "search",
    device: str | None = "cpu",
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[EvalResult, dict]:
    """Evaluate the model at ``model_path`` (a model.pt or finished run directory) on ``game``,
    seen in training or not, with the model's own config (protocol, search) changed by the YAML
    ``config_file`` and then ``overrides`` (``SECTION.FIELD=VALUE``, e.g.
    ``eval.action_ties=prior``); ``model.*`` is fixed by the weights. ``episodes`` and
    ``max_steps`` (>= 1) default to ``eval.num_episodes`` and ``eval.final_max_steps``.
    ``device``: where to evaluate; None means the ``device`` field that ``config_file`` or
    ``overrides`` set, else the CPU (not the device the model was trained on). Returns the
    result and the model's payload."""
    for name, value in (("episodes", episodes), ("max_steps", max_steps)):
        if value is not None and value < 1:
            raise XtraError(f"{name}={value} must be at least 1")
    model, saved, payload = load_model(model_path, "cpu")
    cfg = replace(saved, device="cpu")  # the saved device is the training machine's
    if config_file is not None:
        cfg = load_yaml(config_file, base=cfg)
    cfg = apply_overrides(cfg, parse_set_args(list(overrides)))
    for f in fields(cfg.model):
        if getattr(cfg.model, f.name) != getattr(saved.model, f.name):
            raise ConfigError(
                f"model.{f.name} cannot change: the weights in {model_path} fix the model "
                f"(model.{f.name}={getattr(saved.model, f.name)!r}); drop it from --config/--set"
            )
    torch_device = resolve_device(cfg.device if device is None else device)
    model = model.to(torch_device)
    env = make_env(game, cfg.env, num_envs=1, seed=0, mode="eval", max_episode_steps=1)
    shape = env.obs_shape
    env.close()
    if tuple(payload["obs_shape"]) != tuple(shape):
        raise CheckpointError(
            f"{model_path} sees observations {tuple(payload['obs_shape'])} but {game} gives {shape}"
        )
    kwargs = evaluation_kwargs(cfg)
    if episodes is not None:
        kwargs["num_episodes"] = episodes
    res = evaluate(
        model,
        game,
        policy=policy,
        max_steps=cfg.eval.final_max_steps if max_steps is None else max_steps,
        device=torch_device,
        **kwargs,
    )
    return res, payload
