"""Self-play: N batched environments acting by search, returning trajectories (spec A6.1).

Each life (training mode) or game becomes one trajectory. With ``segment_length`` > 0 a running
trajectory is also handed out in pieces of that many steps while it runs (overlapping by the
K + n steps the targets of a piece's last positions read, which are not sampled there), so long
episodes feed the replay before they end. Every environment step is kept and counted against the
budget (D-EZ-7 fixed): :meth:`SelfPlay.flush` closes unfinished trajectories as cut.

The caller decides where trajectories go (the replay during training, a dataset when
collecting) and how to act (the planner, the noise and the temperature of each step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xtra.act.planner import Planner
from xtra.act.select import draw_from_policy, select_action
from xtra.data.trajectory import Trajectory, TrajectoryBuilder
from xtra.envs.base import BatchedEnv
from xtra.search.improved_policy import completed_q_policy


@dataclass
class EpisodeStats:
    """Finished games since the last call of :meth:`SelfPlay.pop_stats`."""

    returns: list[float] = field(default_factory=list)  # raw scores
    lengths: list[int] = field(default_factory=list)


@dataclass
class Piece:
    """A trajectory (or a piece of a running one) that self-play hands out.

    ``sample_limit``: only its first positions may be sampled (a running piece; the rest is the
    overlap its targets read), None for a whole trajectory. ``game_over``/``life_loss``: how the
    environment ended it (both False for a piece or a cut trajectory)."""

    env: int
    trajectory: Trajectory
    sample_limit: int | None = None
    game_over: bool = False
    life_loss: bool = False


class SelfPlay:
    """Drives ``env`` with a planner (or uniform random actions) and builds trajectories.

    With ``planner=None`` the actions are uniformly random and the stored search statistics are
    a uniform visit distribution and a root value of 0 (EZ runs a search there only to store its
    root value, which an untrained zero-initialised network makes 0 anyway).
    """

    def __init__(
        self,
        env: BatchedEnv,
        rng: np.random.Generator,
        *,
        frame_stack: int,
        segment_length: int = 0,
        overlap: int = 0,
    ):
        self.env = env
        self.rng = rng
        c, h, w = env.frame_shape
        self.stack_shape = (frame_stack, c, h, w)
        self.builders = [
            TrajectoryBuilder(
                frame_stack=frame_stack, frame_shape=env.frame_shape, num_actions=env.num_actions
            )
            for _ in range(env.num_envs)
        ]
        self.segment = segment_length
        self.overlap = overlap
        self.obs: np.ndarray | None = None
        self.env_steps = 0
        self.stats = EpisodeStats()

    def _start(self, i: int, obs_i: np.ndarray) -> None:
        self.builders[i].start(obs_i.reshape(self.stack_shape))

    def reset(self) -> None:
        self.obs = self.env.reset().copy()
        for i in range(self.env.num_envs):
            self._start(i, self.obs[i])

    def step(
        self,
        planner: Planner | None,
        *,
        temperature: float = 1.0,
        add_noise: bool = True,
        selection: str = "visits",
    ) -> list[Piece]:
        """One batched environment step (N agent steps); returns what it finished, by env.

        ``planner=None``: uniform random actions. Otherwise a search from every env's observation
        (Dirichlet noise at the roots with ``add_noise``) and actions drawn from the visit counts
        at ``temperature`` (0 = the most visited), or with ``selection="improved_policy"`` from
        the root's completed-Q improved policy (``search.action_selection``). The stored policy
        is the visit distribution either way."""
        if self.obs is None:
            self.reset()
        n, a = self.env.num_envs, self.env.num_actions
        if planner is None:
            actions = self.rng.integers(a, size=n)
            visits = np.full((n, a), 1.0 / a, dtype=np.float32)
            root_values = np.zeros(n, dtype=np.float32)
        else:
            plan = planner.plan(self.obs, self.env.legal_actions, add_noise=add_noise, rng=self.rng)
            if selection == "improved_policy":
                improved = completed_q_policy(
                    plan.prior_logits,
                    plan.visit_counts,
                    plan.child_q,
                    plan.network_values,
                    np.ones((n, a), dtype=bool),
                )
                actions = draw_from_policy(improved, self.rng)
            elif selection == "visits":
                actions = select_action(
                    plan.visit_counts, temperature, self.rng, deterministic=False
                )
            else:
                raise ValueError(f"unknown selection {selection!r}: visits or improved_policy")
            visits, root_values = plan.visit_policy, plan.root_values
        res = self.env.step(actions)
        c = self.env.frame_shape[0]
        ale_ids = self.env.legal_actions[actions]
        out: list[Piece] = []
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
                traj = self.builders[i].finish(terminated=bool(res.terminated[i]))
                over = bool(res.game_over[i])
                life = bool(res.terminated[i]) and not over
                out.append(Piece(i, traj, game_over=over, life_loss=life))
                self._start(i, res.obs[i])
            elif self.segment and len(self.builders[i]) >= self.segment + self.overlap:
                piece = self.builders[i].split(self.segment, self.overlap)
                out.append(Piece(i, piece, sample_limit=self.segment))
            if res.game_over[i]:
                self.stats.returns.append(float(res.episode_return[i]))
                self.stats.lengths.append(int(res.episode_length[i]))
        self.obs = res.obs.copy()
        self.env_steps += n
        return out

    def flush(self) -> list[Piece]:
        """Every unfinished trajectory, closed as cut (budget reached); the builders restart from
        the current observations."""
        out = []
        for i, b in enumerate(self.builders):
            if b.started and len(b) > 0:
                out.append(Piece(i, b.finish(terminated=False)))
                self._start(i, self.obs[i])
        return out

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
            "stats": {"returns": self.stats.returns, "lengths": self.stats.lengths},
        }

    def load_state_dict(self, state: dict) -> None:
        self.env.load_state_dict(state["env"])
        self.builders = state["builders"]
        self.obs = state["obs"]
        self.env_steps = state["env_steps"]
        self.rng.bit_generator.state = state["rng"]
        stats = state["stats"]
        if isinstance(stats, dict):
            self.stats = EpisodeStats(list(stats["returns"]), list(stats["lengths"]))
        else:  # checkpoints written before the redesign pickled the dataclass
            self.stats = EpisodeStats(list(stats.returns), list(stats.lengths))
