"""Online EfficientZero (``xtra train``, spec A8): self-play, replay, reanalysis, one loop.

:func:`online_stage` is the online half that ``train`` and ``finetune`` share: the target game's
replay with reanalysed targets (source 0), self-play paced to the training steps
(:class:`SelfPlayCollector`), search evaluation on the target game. ``finetune`` adds its offline
sources and task weights; ``train`` adds nothing::

    collector.warm_up()                   random actions until replay.start_transitions
    for step in 0 .. training_steps-1:
        collector.advance(step)           self-play, ~1 env step per training step (A8)
        train_step(...)                   xtra.learn.loop
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xtra import seeds
from xtra.act.planner import Planner
from xtra.act.select import temperature_at
from xtra.act.selfplay import SelfPlay
from xtra.config import Config
from xtra.data.replay import ReplayBuffer
from xtra.device import resolve_device
from xtra.envs import make_env
from xtra.envs.base import BatchedEnv
from xtra.errors import XtraError
from xtra.learn.learner import Learner
from xtra.learn.loop import (
    Networks,
    Source,
    SourceWeights,
    TrainResult,
    build_networks,
    evaluator,
    finished_result,
    make_planner,
    reanalyze_targets,
    run_loop,
)
from xtra.rundir import RunDir


class SelfPlayCollector:
    """Online data for :func:`~xtra.learn.loop.run_loop`: paced self-play with a periodically
    refreshed acting network, storing what it plays in the replay."""

    def __init__(
        self, env: BatchedEnv, replay: ReplayBuffer, nets: Networks, learner: Learner, cfg: Config
    ):
        self.cfg = cfg
        self.nets = nets
        self.replay = replay
        self.acting_model = copy.deepcopy(nets.model)
        self.acting: Planner = make_planner(self.acting_model, cfg, learner.device, learner.amp)
        self.selfplay = SelfPlay(
            env,
            np.random.default_rng(seeds.stream(cfg.seed, seeds.ACTING)),
            frame_stack=cfg.env.frame_stack,
            segment_length=cfg.replay.segment_length,
            overlap=cfg.targets.unroll_steps + cfg.targets.td_steps,
        )

    @property
    def env_steps(self) -> int:
        return self.selfplay.env_steps

    def _store(self, pieces) -> None:
        for p in pieces:
            self.replay.add(p.trajectory, sample_limit=p.sample_limit)

    def warm_up(self) -> None:
        """Uniform random actions until training can start (A6.1)."""
        r, s, sp = self.cfg.replay, self.cfg.schedule, self.selfplay
        while len(self.replay) < r.start_transitions and sp.env_steps < s.env_steps:
            self._store(sp.step(None))
        batch = self.cfg.optim.batch_size
        if len(self.replay) < batch:
            raise XtraError(
                f"only {len(self.replay)} transitions after the warm-up, fewer than "
                f"optim.batch_size={batch}: raise schedule.env_steps or lower optim.batch_size"
            )

    def advance(self, step: int, progress: float) -> None:
        """Self-play paced to ``schedule.env_steps_per_update`` agent steps per training step
        (A8: 1). ``progress``: the share of the run done, for a relative temperature schedule."""
        r, o, s, sp = self.cfg.replay, self.cfg.schedule, self.cfg.search, self.selfplay
        if sp.env_steps < o.env_steps:
            clock = progress if s.temperature_progress else step
            temperature = temperature_at(clock, s.temperatures, s.temperature_steps)
            due = math.ceil(step * o.env_steps_per_update)
            while sp.env_steps < min(max(due, r.start_transitions), o.env_steps):
                self._store(
                    sp.step(
                        self.acting,
                        temperature=temperature,
                        add_noise=True,
                        selection=self.cfg.search.action_selection,
                    )
                )
            if sp.env_steps >= o.env_steps:
                self._store(sp.flush())
        if step % o.selfplay_update_interval == 0:
            self.acting_model.load_state_dict(self.nets.model.state_dict())

    def log_row(self) -> dict[str, float]:
        episodes = self.selfplay.pop_stats()
        row: dict[str, float] = {}
        if episodes.returns:
            row["selfplay/return"] = float(np.mean(episodes.returns))
            row["selfplay/length"] = float(np.mean(episodes.lengths))
            row["selfplay/episodes"] = len(episodes.returns)
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "acting_model": self.acting_model.state_dict(),
            "selfplay": self.selfplay.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], sources: list[Source]) -> None:
        self.acting_model.load_state_dict(state["acting_model"])
        self.replay = sources[0].replay
        self.selfplay.load_state_dict(state["selfplay"])


def check_budget(cfg: Config) -> None:
    """Refuse, before anything is written, a budget whose random warm-up cannot fill one batch
    (the warm-up stops at ``replay.start_transitions`` or ``schedule.env_steps`` agent steps)."""
    warm = min(cfg.replay.start_transitions, cfg.schedule.env_steps)
    if warm < cfg.optim.batch_size:
        raise XtraError(
            f"the random warm-up gives at most {warm} transitions "
            f"(min of replay.start_transitions={cfg.replay.start_transitions} and "
            f"schedule.env_steps={cfg.schedule.env_steps}), fewer than optim.batch_size="
            f"{cfg.optim.batch_size}: raise schedule.env_steps or lower optim.batch_size"
        )


def online_stage(
    env: BatchedEnv,
    cfg: Config,
    run: RunDir,
    nets: Networks,
    learner: Learner,
    *,
    method: str,
    offline_sources: Sequence[Source] = (),
    weights: SourceWeights | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train on ``env``'s game by self-play (source 0: its replay, reanalysed with the target
    network), plus ``offline_sources`` weighted by ``weights`` (finetuning)."""
    replay = ReplayBuffer.from_config(
        cfg.replay,
        frame_shape=env.frame_shape,
        frame_stack=cfg.env.frame_stack,
        action_ids=env.legal_actions,
    )
    target_planner = make_planner(nets.target, cfg, learner.device, learner.amp)
    online = Source(
        game=env.game,
        replay=replay,
        make_targets=reanalyze_targets(target_planner, cfg),
        batch_size=lambda step: cfg.optim.batch_size,
        auto_td_steps=cfg.targets.auto_td_steps,
        offline=False,
    )
    return run_loop(
        run,
        cfg,
        nets,
        learner,
        [online, *offline_sources],
        eval_games=[env.game],
        eval_fn=evaluator(cfg, learner.device, learner.amp),
        method=method,
        obs_shape=env.obs_shape,
        collector=SelfPlayCollector(env, replay, nets, learner, cfg),
        weights=weights,
        progress=progress,
        stop_after=stop_after,
        max_seconds=max_seconds,
    )


def train(
    game: str,
    cfg: Config,
    run_dir: str | Path,
    *,
    method: str = "EfficientZero",
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train EfficientZero on ``game`` in ``run_dir`` (resuming it if it holds a checkpoint).

    ``stop_after``: return right after that training step without a final evaluation, as if the
    process had been killed (tests of resumption). ``max_seconds``: a wall-clock budget (counted
    across resumptions); when it runs out, training ends early and the final evaluation runs.
    """
    check_budget(cfg)
    device = resolve_device(cfg.device)
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    try:
        run = RunDir(run_dir, cfg, stage="train", info={"game": env.game, "method": method})
        done = finished_result(run)
        if done is not None:
            return done
        nets, learner = build_networks(cfg, env.obs_shape, device)
        return online_stage(
            env,
            cfg,
            run,
            nets,
            learner,
            method=method,
            progress=progress,
            stop_after=stop_after,
            max_seconds=max_seconds,
        )
    finally:
        env.close()
