"""The evaluation protocol (spec A9) and score normalisation.

E episodes on environment seeds 0..E-1, played in lock-step; no Dirichlet noise; the action is the
most visited root child (lowest index on ties, or the higher prior with ``eval.action_ties``); no life-loss termination; the score of an episode
is its raw (unclipped) return; an episode stops at the step cap (3,000 steps for periodic and
27,000 for final evaluations with the paper's numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xtra.config import Config
from xtra.envs import make_env
from xtra.learn.planner import Planner
from xtra.model.networks import legal_logits
from xtra.search import select_action


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
    game: str, cfg: Config, act: ActFn, *, max_steps: int, num_episodes: int | None = None
) -> EvalResult:
    """Spec A9's protocol for any acting rule: E episodes on seeds 0..E-1 in lock-step, no
    life-loss termination, raw scores, the step cap; finished episodes stop asking ``act``."""
    num_episodes = num_episodes or cfg.eval.num_episodes
    env = make_env(
        game, cfg.env, num_envs=num_episodes, seed=0, mode="eval", max_episode_steps=max_steps
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


def evaluate(
    model: torch.nn.Module,
    game: str,
    cfg: Config,
    *,
    max_steps: int,
    device: torch.device,
    num_episodes: int | None = None,
    amp: bool = False,
) -> EvalResult:
    """The search policy: MCTS without noise, the most visited child; ties go to the lowest slot
    or, with ``cfg.eval.action_ties == "prior"``, to the higher policy logit."""
    planner = Planner(model, cfg, device, amp=amp)
    # Tie-breaks inside the search are random in EZ's evaluation too; seed them for repeatability.
    rng = np.random.default_rng(cfg.seed + 1_000_003)

    def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
        plan = planner.plan(obs, legal, add_noise=False, rng=rng)
        ties = plan.prior_logits if cfg.eval.action_ties == "prior" else None
        return select_action(plan.visit_counts, 1.0, rng, deterministic=True, tie_scores=ties)

    return play_episodes(game, cfg, act, max_steps=max_steps, num_episodes=num_episodes)


def evaluate_prior(
    model: torch.nn.Module,
    game: str,
    cfg: Config,
    *,
    max_steps: int,
    device: torch.device,
    num_episodes: int | None = None,
    amp: bool = False,
) -> EvalResult:
    """No search: the argmax of the policy head over the game's legal ids (lowest id on ties), as
    behaviour cloning acts (Table 1's BC column)."""
    planner = Planner(model, cfg, device, amp=amp)

    def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
        out = planner.root_inference(obs)
        return legal_logits(out.policy_logits.float(), legal).argmax(dim=1).cpu().numpy()

    return play_episodes(game, cfg, act, max_steps=max_steps, num_episodes=num_episodes)


def evaluate_random(
    game: str, cfg: Config, *, max_steps: int, num_episodes: int | None = None, seed: int = 0
) -> EvalResult:
    """The uniform-random policy under the same protocol: the baseline learning curves are
    compared against."""
    rng = np.random.default_rng(seed + 2_000_003)

    def act(obs: np.ndarray, legal: np.ndarray) -> np.ndarray:
        return rng.integers(len(legal), size=len(obs))

    return play_episodes(game, cfg, act, max_steps=max_steps, num_episodes=num_episodes)
