"""Self-play: N batched environments acting by search, writing whole trajectories to replay (A6.1).

Each life (training mode) or game becomes one trajectory, stored in pieces of
``replay.segment_length`` steps while it runs (overlapping by the K + n steps the targets of a
piece's last positions read, which are not sampled there). Every environment step is kept and
counted against the budget (D-EZ-7 fixed): when the budget is reached, unfinished trajectories are
closed as cut (not terminated) and stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xtra.config import Config
from xtra.data.replay import ReplayBuffer
from xtra.data.trajectory import TrajectoryBuilder
from xtra.envs.base import BatchedEnv
from xtra.learn.planner import Planner
from xtra.search import select_action, temperature_at


@dataclass
class EpisodeStats:
    """Finished games since the last call of :meth:`SelfPlay.pop_stats`."""

    returns: list[float] = field(default_factory=list)  # raw scores
    lengths: list[int] = field(default_factory=list)


class SelfPlay:
    """Drives ``env`` with the search policy and fills ``replay``.

    Before training starts the actions are uniformly random and the stored search statistics are a
    uniform visit distribution and a root value of 0 (EZ runs a search there only to store its root
    value, which an untrained zero-initialised network makes 0 anyway).
    """

    def __init__(
        self, env: BatchedEnv, replay: ReplayBuffer, cfg: Config, rng: np.random.Generator
    ):
        self.env = env
        self.replay = replay
        self.cfg = cfg
        self.rng = rng
        c, h, w = env.frame_shape
        self.stack_shape = (cfg.env.frame_stack, c, h, w)
        self.builders = [
            TrajectoryBuilder(
                frame_stack=cfg.env.frame_stack,
                frame_shape=env.frame_shape,
                num_actions=env.num_actions,
            )
            for _ in range(env.num_envs)
        ]
        # Running trajectories are stored in pieces (replay.segment_length) so that long episodes
        # feed the replay before they end; each piece carries the K + n steps its targets need.
        self.segment = cfg.replay.segment_length
        self.overlap = cfg.replay.unroll_steps + cfg.replay.td_steps
        self.obs: np.ndarray | None = None
        self.env_steps = 0
        self.stats = EpisodeStats()

    def _start(self, i: int, obs_i: np.ndarray) -> None:
        self.builders[i].start(obs_i.reshape(self.stack_shape))

    def reset(self) -> None:
        self.obs = self.env.reset().copy()
        for i in range(self.env.num_envs):
            self._start(i, self.obs[i])

    def step(self, planner: Planner | None, train_step: int) -> None:
        """One batched environment step (N agent steps). ``planner=None``: uniform random actions."""
        if self.obs is None:
            self.reset()
        n, a = self.env.num_envs, self.env.num_actions
        if planner is None:
            actions = self.rng.integers(a, size=n)
            visits = np.full((n, a), 1.0 / a, dtype=np.float32)
            root_values = np.zeros(n, dtype=np.float32)
        else:
            plan = planner.plan(self.obs, self.env.legal_actions, add_noise=True, rng=self.rng)
            temperature = temperature_at(
                train_step, self.cfg.search.temperatures, self.cfg.search.temperature_steps
            )
            actions = select_action(plan.visit_counts, temperature, self.rng, deterministic=False)
            visits, root_values = plan.visit_policy, plan.root_values
        res = self.env.step(actions)
        c = self.env.frame_shape[0]
        ale_ids = self.env.legal_actions[actions]
        for i in range(n):
            self.builders[i].add(
                int(actions[i]),
                int(ale_ids[i]),
                float(res.reward[i]),
                float(res.raw_reward[i]),
                res.final_obs[i, -c:],
                visits[i],
                float(root_values[i]),
            )
            if res.terminated[i] or res.truncated[i]:
                self.replay.add(self.builders[i].finish(terminated=bool(res.terminated[i])))
                self._start(i, res.obs[i])
            elif self.segment and len(self.builders[i]) >= self.segment + self.overlap:
                piece = self.builders[i].split(self.segment, self.overlap)
                self.replay.add(piece, sample_limit=self.segment)
            if res.game_over[i]:
                self.stats.returns.append(float(res.episode_return[i]))
                self.stats.lengths.append(int(res.episode_length[i]))
        self.obs = res.obs.copy()
        self.env_steps += n

    def flush(self) -> None:
        """Store every unfinished trajectory as cut (budget reached); the builders restart from the current obs."""
        for i, b in enumerate(self.builders):
            if b.started and len(b) > 0:
                self.replay.add(b.finish(terminated=False))
                self._start(i, self.obs[i])

    def pop_stats(self) -> EpisodeStats:
        stats, self.stats = self.stats, EpisodeStats()
        return stats

    def state_dict(self) -> dict:
        return {
            "env": self.env.state_dict(),
            "builders": self.builders,
            "obs": self.obs,
            "env_steps": self.env_steps,
            "rng": self.rng.bit_generator.state,
            "stats": self.stats,
        }

    def load_state_dict(self, state: dict) -> None:
        self.env.load_state_dict(state["env"])
        self.builders = state["builders"]
        self.obs = state["obs"]
        self.env_steps = state["env_steps"]
        self.rng.bit_generator.state = state["rng"]
        self.stats = state["stats"]
