"""Collect an offline dataset by acting in a game (``xtra data collect``; issue #5, spec B10.1).

The behaviour policy is uniform random actions (``random``) or the search agent of a trained
model (``checkpoint:PATH``: MCTS with the loaded network, no Dirichlet noise unless asked, a fixed
visit-count temperature). Acting is :class:`~xtra.act.selfplay.SelfPlay` itself, with the env in
training mode, so each life is one trajectory exactly as in EfficientZero's replay (and random
data stores the uniform visit distribution and root value 0, as self-play's warm-up does).

Finished trajectories are committed in chunks of about ``chunk_steps`` agent steps together with
the collector's whole state (environments, half-built trajectories, random generator), so a killed
collection resumes from the last committed chunk and produces the same data as an uninterrupted
one. Unfinished trajectories at the end of the budget are stored as cut (not terminated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xtra import seeds
from xtra.act.planner import Planner
from xtra.act.selfplay import Piece, SelfPlay
from xtra.atomic import sha256_file
from xtra.compat import load_pickled
from xtra.config import Config, to_dict
from xtra.data.dataset import Dataset
from xtra.data.dataset_format import MANIFEST
from xtra.data.dataset_writer import DatasetWriter
from xtra.device import resolve_device
from xtra.envs import make_env
from xtra.errors import DatasetError
from xtra.rundir import load_model
from xtra.search import search_kwargs


def parse_policy(policy: str) -> tuple[str, str | None]:
    """``random`` -> ("random", None); ``checkpoint:PATH`` -> ("checkpoint", PATH)."""
    if policy == "random":
        return "random", None
    kind, _, path = policy.partition(":")
    if kind == "checkpoint" and path:
        return "checkpoint", path
    raise DatasetError(f"unknown policy {policy!r}: use 'random' or 'checkpoint:PATH/model.pt'")


def _load_collector_state(out: Path, chunk: dict, state_file: Path) -> dict:
    """The collector state of the last committed chunk, checked against the chunk's SHA-256."""
    fix = f"restore it from a backup, or remove {out} and collect again"
    digest = chunk.get("files", {}).get(state_file.name)
    try:
        if digest is not None and sha256_file(state_file) != digest:
            raise DatasetError(
                f"{state_file} fails its SHA-256 checksum (corrupt or modified): {fix}"
            )
        return load_pickled(state_file)
    except OSError as e:
        raise DatasetError(
            f"cannot read {state_file} ({e.strerror or type(e).__name__}): fix its permissions "
            "and run the same command again"
        ) from None
    except DatasetError:
        raise
    except Exception as e:  # unpickling damaged bytes raises anything; it is the file's fault
        raise DatasetError(f"cannot read {state_file} ({type(e).__name__}): {fix}") from None


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
    out = Path(out)
    # Every argument is checked before anything is written.
    if steps < 1:
        raise DatasetError(f"--steps {steps} must be at least 1")
    if chunk_steps < 1:
        raise DatasetError(f"--chunk-steps {chunk_steps} must be at least 1")
    if not 0 <= temperature < float("inf"):
        raise DatasetError(
            f"--temperature {temperature} must be a finite number >= 0 (0: the most visited action)"
        )
    kind, ckpt = parse_policy(policy)
    env = make_env(game, cfg.env, num_envs=cfg.env.num_envs, seed=cfg.seed, mode="train")
    behaviour: dict[str, Any] = {"kind": kind}
    planner = None
    if kind == "checkpoint":
        device = resolve_device(cfg.device)
        model, _, payload = load_model(ckpt, device)
        if env.game not in payload.get("games", []):
            raise DatasetError(
                f"{ckpt} was trained on {payload.get('games')}, not {env.game}: give a model of "
                f"{env.game}"
            )
        planner = Planner(
            model,
            device,
            search_kwargs=search_kwargs(cfg.search, cfg.discount),
            cuda_graphs=cfg.search.cuda_graphs,
        )
        behaviour.update(
            checkpoint=str(Path(ckpt).resolve()),
            model_stage=payload.get("stage"),
            model_step=payload.get("step"),
            num_simulations=cfg.search.num_simulations,
            dirichlet_noise=bool(noise),
            temperature=float(temperature),
        )
    protocol = to_dict(cfg)["env"]
    # A dataset holds whole trajectories (its priorities are reset at load): no self-play pieces.
    sp = SelfPlay(
        env,
        np.random.default_rng(seeds.stream(cfg.seed, seeds.ACTING)),
        frame_stack=cfg.env.frame_stack,
    )
    game_ids = np.arange(env.num_envs, dtype=np.int64)
    next_game = env.num_envs

    writer = None
    if (out / MANIFEST).exists():
        writer = DatasetWriter.resume(out)
        if not writer.manifest["chunks"] and not writer.manifest.get("complete"):
            # Nothing was committed (killed before its first chunk): nothing to resume, so start
            # over with today's options rather than refuse them.
            (out / MANIFEST).unlink()
            writer = None
    if writer is not None:
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
            state = _load_collector_state(out, m["chunks"][-1], state_file)
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
            seeds={
                "env": cfg.seed,
                "policy": seeds.stream(cfg.seed, seeds.ACTING),
                "num_envs": env.num_envs,
            },
            jpeg=cfg.replay.jpeg,
            jpeg_quality=cfg.replay.jpeg_quality,
            notes=["each life is one trajectory (training mode), as EfficientZero's replay"]
            if cfg.env.episode_life
            else [],
        )
    writer.manifest["complete"] = False

    def state() -> dict:
        return {"selfplay": sp.state_dict(), "game_ids": game_ids.copy(), "next_game": next_game}

    def take(pieces: list[Piece]) -> None:
        """File the trajectories self-play finished with their environment's flags."""
        nonlocal next_game
        for p in pieces:
            writer.add(
                p.trajectory,
                game_over=int(p.game_over),
                life_loss=int(p.life_loss),
                game_id=int(game_ids[p.env]),
            )
            if p.game_over:
                game_ids[p.env] = next_game
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
            take(sp.step(planner, temperature=temperature, add_noise=noise))
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
        take(sp.flush())
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
