"""Collect an offline dataset by acting in a game (``xtra data collect``; issue #5, spec B10.1).

The behaviour policy is uniform random actions (``random``) or the search agent of a trained
model (``checkpoint:PATH``: MCTS with the loaded network, no Dirichlet noise unless asked, a fixed
visit-count temperature). Acting is :class:`~xtra.learn.selfplay.SelfPlay` itself, with the env in
TRAINING mode, so each life is one trajectory exactly as in EfficientZero's replay (and random
data stores the uniform visit distribution and root value 0, as self-play's warm-up does).

Finished trajectories are committed in chunks of about ``chunk_steps`` agent steps together with
the collector's whole state (environments, half-built trajectories, random generator), so a killed
collection resumes from the last committed chunk and produces the same data as an uninterrupted
one. Unfinished trajectories at the end of the budget are stored as cut (not terminated).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from xtra.config import Config, to_dict
from xtra.data.dataset import MANIFEST, Dataset, DatasetWriter
from xtra.data.trajectory import Trajectory
from xtra.envs import make_env
from xtra.errors import DatasetError


class _RecordingEnv:
    """Passes everything to ``env`` and keeps the last :class:`StepResult` (for game-over flags)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.last = None

    def step(self, actions: np.ndarray):
        self.last = self.env.step(actions)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


class _Inbox:
    """Stands in for the replay buffer of :class:`SelfPlay`: keeps the trajectories it is given."""

    def __init__(self) -> None:
        self.items: list[Trajectory] = []

    def add(self, traj: Trajectory) -> None:
        self.items.append(traj)


class _FixedNoise:
    """A planner whose Dirichlet noise is fixed (SelfPlay always asks for noise)."""

    def __init__(self, planner: Any, noise: bool) -> None:
        self.planner, self.noise = planner, noise

    def plan(self, obs, legal_actions, *, add_noise: bool, rng, **kw):
        return self.planner.plan(obs, legal_actions, add_noise=self.noise, rng=rng, **kw)


def parse_policy(policy: str) -> tuple[str, str | None]:
    """``random`` -> ("random", None); ``checkpoint:PATH`` -> ("checkpoint", PATH)."""
    if policy == "random":
        return "random", None
    kind, _, path = policy.partition(":")
    if kind == "checkpoint" and path:
        return "checkpoint", path
    raise DatasetError(f"unknown policy {policy!r}: use 'random' or 'checkpoint:PATH/model.pt'")


def collect(
    game: str,
    cfg: Config,
    out: str | Path,
    *,
    steps: int,
    policy: str = "random",
    chunk_steps: int = 10_000,
    noise: bool = False,
    temperature: float = 0.25,
    progress: bool = False,
    stop_after_chunks: int | None = None,
) -> Dataset:
    """Collect ``steps`` agent steps of ``game`` into the dataset ``out`` (resuming it if present).

    Args:
        game: game name (``make_env``).
        cfg: protocol (``cfg.env``, ``env.num_envs`` environments in parallel), search settings and
            seed.
        out: dataset directory.
        steps: agent-step budget (all environments together, as ``SelfPlay.env_steps``).
        policy: ``random`` or ``checkpoint:PATH``.
        chunk_steps: agent steps between commits.
        noise: Dirichlet noise at the root (checkpoint policy).
        temperature: visit-count temperature of action selection (checkpoint policy).
        progress: show a progress bar.
        stop_after_chunks: stop (without finishing) after this many commits; for tests of resume.
    """
    from xtra.learn.selfplay import SelfPlay

    out = Path(out)
    if steps < 1:
        raise DatasetError(f"--steps {steps} must be at least 1")
    kind, ckpt = parse_policy(policy)
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    behaviour: dict[str, Any] = {"kind": kind}
    planner = None
    if kind == "checkpoint":
        import torch

        from xtra.learn.planner import Planner
        from xtra.learn.train import resolve_device
        from xtra.rundir import load_model

        device = resolve_device(cfg.device)
        model, _, payload = load_model(ckpt, device)
        if env.game not in payload.get("games", []):
            raise DatasetError(
                f"{ckpt} was trained on {payload.get('games')}, not {env.game}: give a model of "
                f"{env.game}"
            )
        cfg = dataclasses.replace(
            cfg,
            search=dataclasses.replace(
                cfg.search, temperatures=(float(temperature),), temperature_steps=()
            ),
        )
        planner = _FixedNoise(Planner(model, cfg, torch.device(device)), noise)
        behaviour.update(
            checkpoint=str(Path(ckpt).resolve()),
            model_stage=payload.get("stage"),
            model_step=payload.get("step"),
            num_simulations=cfg.search.num_simulations,
            dirichlet_noise=bool(noise),
            temperature=float(temperature),
        )
    protocol = to_dict(cfg)["env"]
    rec = _RecordingEnv(env)
    inbox = _Inbox()
    # A dataset holds whole trajectories (its priorities are reset at load): no self-play pieces.
    whole = dataclasses.replace(cfg, replay=dataclasses.replace(cfg.replay, segment_length=0))
    sp = SelfPlay(rec, inbox, whole, np.random.default_rng(cfg.seed + 1))  # type: ignore[arg-type]
    game_ids = np.arange(env.num_envs, dtype=np.int64)
    next_game = env.num_envs

    if (out / MANIFEST).exists():
        writer = DatasetWriter.resume(out)
        m = writer.manifest
        if m["game"] != env.game:
            raise DatasetError(
                f"{out} holds a dataset of {m['game']}, not {env.game}: choose a new output"
            )
        if m.get("behaviour_policy") != behaviour or m.get("protocol") != protocol:
            raise DatasetError(
                f"{out} was collected with another policy or protocol: resume with the same options "
                "or choose a new output"
            )
        state_file = writer.last_collector_state()
        if m["chunks"] and state_file is None:
            raise DatasetError(
                f"{out} was not written by `xtra data collect`: it cannot be resumed"
            )
        if state_file is not None:
            import torch

            state = torch.load(state_file, map_location="cpu", weights_only=False)
            sp.load_state_dict(state["selfplay"])
            game_ids, next_game = state["game_ids"], state["next_game"]
        if m.get("complete") and sp.env_steps >= steps:
            return Dataset(out)
    else:
        writer = DatasetWriter.create(
            out,
            game=env.game,
            legal_actions=env.legal_actions,
            frame_shape=env.frame_shape,
            frame_stack=cfg.env.frame_stack,
            protocol=protocol,
            behaviour_policy=behaviour,
            tool="xtra data collect",
            seeds={"env": cfg.seed, "policy": cfg.seed + 1, "num_envs": env.num_envs},
            jpeg=cfg.replay.jpeg,
            jpeg_quality=cfg.replay.jpeg_quality,
            notes=["each life is one trajectory (training mode), as EfficientZero's replay"]
            if cfg.env.episode_life
            else [],
        )
    writer.manifest["complete"] = False

    def state() -> dict:
        return {"selfplay": sp.state_dict(), "game_ids": game_ids.copy(), "next_game": next_game}

    def take(res) -> None:
        """File the trajectories SelfPlay finished this step with their env's flags."""
        nonlocal next_game
        items, inbox.items = inbox.items, []
        ended = np.flatnonzero(res.terminated | res.truncated) if res is not None else []
        for i, traj in zip(ended, items):
            over = bool(res.game_over[i])
            life = bool(res.terminated[i]) and not over
            writer.add(traj, game_over=int(over), life_loss=int(life), game_id=int(game_ids[i]))
            if over:
                game_ids[i] = next_game
                next_game += 1

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=sp.env_steps, desc=f"collect {env.game}", unit="step")
    last_commit = sp.env_steps
    commits = 0
    try:
        while sp.env_steps < steps:
            before = sp.env_steps
            sp.step(planner, train_step=0)  # type: ignore[arg-type]
            take(rec.last)
            if bar is not None:
                bar.update(sp.env_steps - before)
            if sp.env_steps - last_commit >= chunk_steps and sp.env_steps < steps:
                writer.commit(
                    collector_state=state(),
                    manifest_updates={"steps": {"env_steps": sp.env_steps}},
                )
                last_commit = sp.env_steps
                commits += 1
                if stop_after_chunks is not None and commits >= stop_after_chunks:
                    return Dataset(out)
        # Budget reached: store unfinished trajectories as cut (no game over, no life loss).
        open_envs = [i for i, b in enumerate(sp.builders) if b.started and len(b) > 0]
        sp.flush()
        for i, traj in zip(open_envs, inbox.items):
            writer.add(traj, game_over=0, life_loss=0, game_id=int(game_ids[i]))
        inbox.items = []
        writer.commit(
            collector_state=state(), manifest_updates={"steps": {"env_steps": sp.env_steps}}
        )
        stats = {
            "env_steps": sp.env_steps,
            "transitions": writer.num_transitions,
        }
        return writer.finalize({"steps": stats})
    finally:
        if bar is not None:
            bar.close()
        env.close()
