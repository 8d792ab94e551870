"""The jobs of a sweep: one pipeline stage for one game (or the student), in one output path.

Every job kind has three functions of its output path ``out``:

* :func:`run` does the work, resuming what an earlier, interrupted attempt left in ``out`` (the
  stage drivers resume from their checkpoints; a dataset from its last committed chunk);
* :func:`done` says whether ``out`` holds a finished result (``final.json`` of a run directory,
  a complete dataset manifest, an evaluation's JSON file);
* :func:`result` reads that result back from disk (paths and numbers only).

Because results are always read from disk, a job skipped on a rerun and a job that just ran
report the same numbers, whichever machine ran them.

=============  ==========================================  ==================================
kind           work                                        out / finished when
=============  ==========================================  ==================================
``collect``    an offline dataset of one game              dataset dir; manifest complete
``random``     the uniform-random policy's score           JSON file; exists
``teacher``    one offline teacher (``xtra teacher``)      run dir; final.json
``distill``    the student, or a student baseline          run dir; final.json
``zero_shot``  the student on a target, before finetuning  JSON file; exists
``finetune``   one finetuning run (``xtra finetune``)      run dir; final.json
=============  ==========================================  ==================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xtra.atomic import atomic_write_text
from xtra.config import Config
from xtra.rundir import read_final

KINDS = ("collect", "random", "teacher", "distill", "zero_shot", "finetune")


def set_threads(threads: int) -> int:
    """One process's torch/numba/OpenMP threads; returns torch's previous count. A CPU sweep is
    short of cores, not of threads inside one run."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    return before


# --------------------------------------------------------------------------- the work


def _collect(out: str, *, game: str, cfg: Config, steps: int, policy: str) -> None:
    from xtra.act.collect import collect

    collect(game, cfg, out, steps=steps, policy=policy, chunk_steps=max(steps // 4, 500))


def _random(out: str, *, game: str, cfg: Config) -> None:
    from xtra.act.evaluate import evaluate, evaluation_kwargs

    res = evaluate(
        None, game, policy="random", max_steps=cfg.eval.final_max_steps, **evaluation_kwargs(cfg)
    )
    _write_json(out, {"game": game, "mean": res.mean, "scores": res.scores.tolist()})


def _teacher(out: str, *, dataset: str, cfg: Config, seconds: float | None) -> None:
    from xtra.transfer.teacher import train_teacher

    train_teacher(dataset, cfg, out, progress=False, max_seconds=seconds)


def _distill(
    out: str,
    *,
    data: dict[str, str],
    teachers: dict[str, str] | None,
    cfg: Config,
    seconds: float | None,
    targets: str,
) -> None:
    from xtra.transfer.distill import distill

    distill(data, cfg, out, teachers=teachers, targets=targets, progress=False, max_seconds=seconds)


def _zero_shot(out: str, *, model: str, game: str, cfg: Config) -> None:
    from xtra.act.evaluate import evaluate, evaluation_kwargs
    from xtra.device import resolve_device
    from xtra.rundir import load_model

    device = resolve_device(cfg.device)
    net, _, _ = load_model(model, device)
    res = evaluate(
        net, game, max_steps=cfg.eval.final_max_steps, device=device, **evaluation_kwargs(cfg)
    )
    _write_json(out, {"game": game, "mean": res.mean, "scores": res.scores.tolist()})


def _finetune(
    out: str,
    *,
    game: str,
    cfg: Config,
    pretrained: str | None,
    offline: dict[str, str],
    label: str,
    seconds: float | None,
    teachers: dict[str, str] | None = None,
) -> None:
    from xtra.transfer.finetune import finetune

    finetune(
        game,
        cfg,
        out,
        pretrained=pretrained,
        offline=offline,
        teachers=teachers,
        method=label,
        progress=False,
        max_seconds=seconds,
    )


_WORK = {
    "collect": _collect,
    "random": _random,
    "teacher": _teacher,
    "distill": _distill,
    "zero_shot": _zero_shot,
    "finetune": _finetune,
}


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


# --------------------------------------------------------------------------- the interface


def run(kind: str, out: str, args: dict[str, Any]) -> dict[str, Any]:
    """Do (or resume) the job and return its :func:`result`."""
    _WORK[kind](out, **args)
    return result(kind, out)


def done(kind: str, out: str | Path) -> bool:
    out = Path(out)
    if kind == "collect":
        from xtra.data.dataset_format import MANIFEST

        f = out / MANIFEST
        return f.exists() and bool(json.loads(f.read_text()).get("complete"))
    if kind in ("random", "zero_shot"):
        return out.is_file()
    return read_final(out) is not None


def result(kind: str, out: str | Path) -> dict[str, Any]:
    """The finished job's paths and numbers, read from ``out``."""
    out = Path(out)
    if kind == "collect":
        from xtra.data.dataset_format import read_manifest

        m = read_manifest(out)
        return {"game": m["game"], "path": str(out), "transitions": m["steps"]["transitions"]}
    if kind in ("random", "zero_shot"):
        data = json.loads(out.read_text())
        return {"game": data["game"], "mean": float(data["mean"])}
    final = read_final(out)
    if final is None:
        raise FileNotFoundError(f"{out} has no final.json")
    finals = {g: float(r["mean"]) for g, r in final["finals"].items()}
    res: dict[str, Any] = {"run_dir": str(out), "final": float(final["final"]["mean"])}
    if kind == "distill":
        res["finals"] = finals
    return res
