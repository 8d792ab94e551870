"""Every bad input is one line, ``error: ...``, exit code 2, and leaves nothing a later command
would trust (issue 15). One test (or a few) per pattern, each with several cases, all through the
real entry point ``xtra.cli.main``:

1. operating-system errors and the known failures of the libraries below (CUDA, size mismatch,
   budget) are one line, not a traceback; a bug still shows its traceback;
2. model files and checkpoints are checksummed and verified on load;
3. zero and negative counts are errors, never "the default";
4. every argument is checked before anything is written;
5. a message names what the user typed (the flag, the path) and the fix;
6. a run directory keeps one checkpoint, whatever killed the process before.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from xtra import rundir
from xtra.cli import main

GAME = "toy/catch"
TINY = ["--preset", "tiny", "--quiet"]
for _s in (
    "schedule.training_steps=4",
    "schedule.checkpoint_interval=2",
    "schedule.env_steps=40",
    "optim.batch_size=8",
    "replay.start_transitions=16",
    "eval.interval=2",
    "eval.num_episodes=1",
    "eval.final_max_steps=5",
    "eval.periodic_max_steps=5",
    "search.num_simulations=2",
):
    TINY += ["--set", _s]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this PyTorch sees a GPU")


def run_cli(capsys, argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # usage errors exit from the parser
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, argv, *fragments, absent=()) -> str:
    """Run ``xtra ARGV``: exit code 2, one stderr line ``error: ...`` holding every fragment."""
    code, _, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    for f in absent:
        assert f not in lines[0], (f, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (two checkpoints' worth of steps, one kept, model.pt, final.json)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", GAME, "--run-dir", str(run), *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "catch"
    assert main(["data", "collect", GAME, "--out", str(out), "--steps", "40", *TINY[:3]]) == 0
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def unfinish(run: Path) -> None:
    """As if the run was killed during its final evaluation: rerunning resumes its checkpoint."""
    (run / "final.json").unlink()
    (run / "model.pt").unlink()


def checkpoint(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()


def flip_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor stored in a ``torch.save`` file."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def train_again(run: Path) -> list:
    return ["train", GAME, "--run-dir", run, *TINY]


# --------------------------------------------------------------------------- 1. OS errors, known failures


def test_paths_that_are_files_or_lie_under_files(finished, dataset, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    under = a_file / "sub"
    cases = [
        (["train", GAME, "--run-dir", a_file, *TINY], "--run-dir", "is a file"),
        (["train", GAME, "--run-dir", under, *TINY], "--run-dir", "lies under"),
        (["teacher", dataset, "--run-dir", under, *TINY], "--run-dir", "lies under"),
        (["env", "check", GAME, "--steps", "2", "--out", under / "x.png"], "--out", "lies under"),
        (["data", "collect", GAME, "--out", a_file, "--steps", "9", *TINY[:2]], "--out", "file"),
        (["data", "info", dataset, "--frames", under / "x.png"], "--frames", "lies under"),
        (["data", "from-run", finished, under], "OUT", "lies under"),
        (["evaluate", finished, GAME, "--episodes", "1", "--json", under], "--json", "lies under"),
        (["demo", "--out", a_file], "--out", "is a file"),
    ]
    for argv, flag, what in cases:
        one_line_error(capsys, argv, flag, str(a_file), what)
    one_line_error(
        capsys, ["evaluate", finished, GAME, "--json", tmp_path], "--json", "is a directory"
    )
    assert a_file.read_text() == "x"


def test_config_files_that_are_not_yaml_text(finished, tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- search.num_simulations=4\n")
    for argv in (["config", "show"], ["train", GAME, *TINY], ["evaluate", finished, GAME]):
        one_line_error(capsys, [*argv, "--config", tmp_path], "--config", "is a directory")
        one_line_error(capsys, [*argv, "--config", binary], "--config", "not UTF-8")
        one_line_error(capsys, [*argv, "--config", tmp_path / "no.yaml"], "does not exist")
        one_line_error(capsys, [*argv, "--config", a_list], "--config", "holds a list")


def test_paths_without_permission(tmp_path, monkeypatch, capsys):
    """As a user without write or read permission sees them (root has every permission, so the
    permission checks are made to fail)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    secret = tmp_path / "secret.yaml"
    secret.write_text("seed: 1\n")
    real_read = Path.read_bytes

    def read_bytes(self):
        if self == secret:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    for argv, flag in [
        (["train", GAME, "--run-dir", locked / "r", *TINY], "--run-dir"),
        (["data", "collect", GAME, "--out", locked / "d", "--steps", "9"], "--out"),
        (["env", "check", GAME, "--out", locked / "x.png"], "--out"),
    ]:
        one_line_error(capsys, argv, flag, str(locked), "not writable")
    one_line_error(
        capsys, ["config", "show", "--config", secret], "--config", "cannot be read", "permission"
    )
    assert not list(locked.iterdir())


def test_an_os_error_deep_inside_names_the_path_and_the_fix(tmp_path, monkeypatch, capsys):
    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rundir, "atomic_write_text", full)
    one_line_error(
        capsys,
        ["train", GAME, "--run-dir", tmp_path / "r", *TINY],
        "config.yaml",
        "no space left on device",
        "free some disk space",
    )


def test_a_bug_keeps_its_traceback(monkeypatch):
    import xtra.cli.games

    def bug():
        raise RuntimeError("a bug")

    monkeypatch.setattr(xtra.cli.games, "field_help", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["config", "fields"])


@NO_CUDA
def test_cuda_on_a_cpu_only_pytorch(finished, dataset, tmp_path, capsys):
    devices = [["--device", "cuda"], ["--set", "device=cuda"], ["--device", "cuda:1"]]
    if not torch.backends.mps.is_available():
        devices.append(["--device", "mps"])
    for device in devices:
        for argv in (
            ["train", GAME, "--run-dir", tmp_path / "r", *TINY],
            ["teacher", dataset, "--run-dir", tmp_path / "r", *TINY],
            ["evaluate", finished, GAME, "--episodes", "1"],
            ["data", "collect", GAME, "--out", tmp_path / "d", "--steps", "9",
             "--policy", f"checkpoint:{finished}", *TINY[:2]],
        ):  # fmt: skip
            one_line_error(capsys, [*argv, *device], device[1].split("=")[-1], "use device=cpu")
    assert not list(tmp_path.iterdir())
    # evaluate: --config applies on top of the model's saved config, --device last.
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("device: cuda\n")
    evaluate = ["evaluate", finished, GAME, "--episodes", "1", "--max-steps", "3", "--config", gpu]
    one_line_error(capsys, evaluate, "cuda")
    assert run_cli(capsys, [*evaluate, "--device", "cpu"])[0] == 0


def test_a_checkpoint_of_another_model_size(run, capsys):
    unfinish(run)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("  size: ez ", "  size: ez-l "))
    one_line_error(
        capsys,
        [*train_again(run), "--set", "model.size=ez-l"],
        "state.pt",
        "model.size=ez-l",
        "--config",
        "--run-dir",
    )
    assert not (run / "model.pt").exists()


def test_a_model_whose_config_does_not_fit_its_weights(finished, tmp_path, capsys):
    payload = torch.load(finished / "model.pt", weights_only=False)
    payload["config"]["model"]["size"] = "ez-l"
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)  # its checksum no longer matches
    one_line_error(capsys, ["evaluate", edited, GAME], str(edited), "SHA-256")
    del payload["sha256"]  # as a file written before checksums
    torch.save(payload, edited)
    one_line_error(capsys, ["evaluate", edited, GAME], str(edited), "do not fit its own config")
    one_line_error(
        capsys,
        ["evaluate", finished, GAME, "--set", "model.size=ez-l"],
        "model.size cannot change",
        "--set",
    )


def test_a_budget_below_the_warm_up(tmp_path, capsys):
    one_line_error(
        capsys,
        ["train", GAME, "--run-dir", tmp_path / "r", *TINY, "--set", "schedule.env_steps=1"],
        "env_steps",
    )


# --------------------------------------------------------------------------- 2. checksums


def test_flipped_bytes_in_a_model_file(run, tmp_path, capsys):
    model = run / "model.pt"
    flip_tensor_byte(model)
    fix = "final.json"  # how to write it again from the run's checkpoint
    one_line_error(capsys, ["evaluate", run, GAME, "--episodes", "1"], str(model), "SHA-256", fix)
    one_line_error(
        capsys,
        ["data", "collect", GAME, "--out", tmp_path / "d", "--steps", "9",
         "--policy", f"checkpoint:{model}", *TINY[:2]],
        str(model), "SHA-256",
    )  # fmt: skip
    one_line_error(
        capsys,
        ["finetune", GAME, "--pretrained", model, "--no-offline", "--run-dir", tmp_path / "f",
         *TINY],
        str(model), "SHA-256",
    )  # fmt: skip
    assert not (tmp_path / "d").exists() and not (tmp_path / "f").exists()
    # A model.pt outside a run directory: the fix is to copy it again.
    alone = tmp_path / "alone.pt"
    shutil.copy(model, alone)
    one_line_error(capsys, ["evaluate", alone, GAME], str(alone), "SHA-256", "copy it again")


def test_damaged_checkpoints(run, tmp_path, capsys):
    unfinish(run)
    ckpt = checkpoint(run)
    state = ckpt / "state.pt"
    kept = state.read_bytes()
    flip_tensor_byte(state)
    for argv in (train_again(run), ["data", "from-run", run, tmp_path / "d"]):
        one_line_error(
            capsys, argv, str(state), "SHA-256", "restore", f"remove {run / 'checkpoints'}"
        )
    state.write_bytes(kept)
    frames = next(ckpt.rglob("frames.npy"))
    frames.write_bytes(frames.read_bytes()[:-100])  # truncated
    one_line_error(capsys, train_again(run), str(frames), "SHA-256")
    frames.unlink()
    one_line_error(capsys, train_again(run), str(frames), "missing")
    assert not (run / "model.pt").exists() and not (tmp_path / "d").exists()


def test_an_unreadable_file_is_not_to_be_deleted(run, monkeypatch, capsys):
    unfinish(run)

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rundir, "sha256_file", denied)
    one_line_error(
        capsys,
        train_again(run),
        str(checkpoint(run)),
        "permission denied",
        "permissions",
        absent=["remove"],
    )
    monkeypatch.undo()
    monkeypatch.setattr(rundir, "load_pickled", denied)
    one_line_error(
        capsys, train_again(run), "state.pt", "permission denied", "permissions", absent=["remove"]
    )
    one_line_error(
        capsys, ["evaluate", "--episodes", "1", rundir.__file__, GAME], "permission denied",
        absent=["remove"],
    )  # fmt: skip


def test_files_written_before_checksums_still_load(run, capsys):
    payload = torch.load(run / "model.pt", weights_only=False)
    del payload["sha256"]
    torch.save(payload, run / "model.pt")
    assert run_cli(capsys, ["evaluate", run, GAME, "--episodes", "1"])[0] == 0
    unfinish(run)
    (checkpoint(run) / "checksums.json").unlink()
    code, out, err = run_cli(capsys, train_again(run))
    assert code == 0, err
    assert "final evaluation on toy/catch" in out
    assert (checkpoint(run) / "checksums.json").exists() is False  # resumed, not rewritten


# --------------------------------------------------------------------------- 3. zero is not a default


def test_zero_and_negative_counts(finished, dataset, tmp_path, capsys):
    cases = [
        (["evaluate", finished, GAME], "--episodes", ("0", "-2")),
        (["evaluate", finished, GAME], "--max-steps", ("0", "-5")),
        (["data", "collect", GAME, "--out", tmp_path / "d", "--steps", "9"], "--chunk-steps",
         ("0", "-1")),
        (["data", "collect", GAME, "--out", tmp_path / "d"], "--steps", ("0", "-9")),
        (["data", "info", dataset], "--num-frames", ("0", "-3")),
        (["env", "check", GAME], "--steps", ("0", "-3")),
        (["env", "check", GAME], "--num-frames", ("0", "-1")),
        (["finetune", GAME, "--no-pretraining", "--no-offline"], "--target-batch", ("0", "-4")),
        (["finetune", "--recipe", "minatar"], "--num-games", ("0",)),
        (["demo", "--out", tmp_path / "demo"], "--workers", ("0", "-2")),
        (["demo", "--out", tmp_path / "demo"], "--minutes", ("0", "-1", "nan")),
    ]  # fmt: skip
    for argv, flag, values in cases:
        for v in values:
            one_line_error(capsys, [*argv, flag, v], flag, v)
    one_line_error(capsys, ["evaluate", finished, GAME, "--episodes", "two"], "--episodes", "two")
    assert not list(tmp_path.iterdir())


def test_the_library_refuses_zero_too(finished):
    from xtra.act.evaluate import evaluate_saved_model
    from xtra.errors import XtraError

    for kwargs in ({"episodes": 0}, {"max_steps": 0}, {"episodes": -2}):
        with pytest.raises(XtraError, match="must be at least 1"):
            evaluate_saved_model(finished, GAME, **kwargs)


# --------------------------------------------------------------------------- 4. checked before written


def test_nothing_is_written_before_every_argument_is_checked(finished, dataset, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        ["data", "collect", GAME, "--out", out, "--steps", "9", "--temperature", "-1"],
        ["data", "collect", GAME, "--out", out, "--steps", "9", "--policy", "bogus"],
        ["data", "collect", "Brekout", "--out", out, "--steps", "9"],
        ["data", "info", dataset, "--frames", out / "x.png", "--num-frames", "-3"],
        ["env", "check", GAME, "--out", out / "x.png", "--num-frames", "0"],
        ["train", "Brekout", "--run-dir", out, *TINY],
        ["train", GAME, "--run-dir", out, *TINY, "--set", "optim.lr=-1"],
        ["teacher", dataset, "--run-dir", out, *TINY, "--config", tmp_path / "none.yaml"],
        ["evaluate", finished, "Brekout", "--json", out / "x.json"],
    ]
    for argv in cases:
        one_line_error(capsys, argv)
        assert not out.exists(), argv
    # The corrected command then runs.
    code, _, err = run_cli(
        capsys, ["data", "collect", GAME, "--out", out, "--steps", "9", "--temperature", "0.5",
                 *TINY[:3]]
    )  # fmt: skip
    assert code == 0, err


def test_an_empty_dataset_left_behind_does_not_block_the_next_collection(dataset, tmp_path, capsys):
    out = tmp_path / "d"
    (out / "chunks").mkdir(parents=True)
    manifest = json.loads((dataset / "dataset.json").read_text())
    manifest.update(chunks=[], complete=False, behaviour_policy={"kind": "other"})
    (out / "dataset.json").write_text(json.dumps(manifest))  # killed before its first chunk
    code, out_text, err = run_cli(
        capsys, ["data", "collect", GAME, "--out", out, "--steps", "20", *TINY[:3]]
    )
    assert code == 0, err
    assert json.loads((out / "dataset.json").read_text())["behaviour_policy"] == {"kind": "random"}


# --------------------------------------------------------------------------- 5. the right names


def test_messages_name_what_the_user_typed(run, finished, tmp_path, capsys):
    one_line_error(
        capsys, ["evaluate", finished, GAME, "--episodes", "-2"], "--episodes", absent=["num_envs"]
    )
    one_line_error(
        capsys, ["env", "check", GAME, "--steps", "-3"], "--steps", absent=["max_episode_steps"]
    )
    one_line_error(
        capsys, ["config", "show", "--config", tmp_path], "is a directory", absent=["not exist"]
    )
    one_line_error(capsys, ["train"], "game", "xtra train --help")
    one_line_error(capsys, ["trian"], "invalid choice", "xtra --help")
    one_line_error(capsys, ["data", "from-run", tmp_path / "none", tmp_path / "d"], "RUN_DIR")
    # A damaged replay in a checkpoint written before checksums: what is wrong and what to do;
    # `data from-run` calls it the run's checkpoint, not a dataset.
    unfinish(run)
    ckpt = checkpoint(run)
    (ckpt / "checksums.json").unlink()
    frames = next(ckpt.rglob("frames.npy"))
    frames.write_bytes(frames.read_bytes()[:100])
    one_line_error(capsys, train_again(run), str(ckpt), "restore", "remove")
    one_line_error(
        capsys,
        ["data", "from-run", run, tmp_path / "d"],
        "checkpoint",
        "restore",
        absent=["the dataset is damaged"],
    )
    assert not (tmp_path / "d").exists()


def test_damaged_run_files(run, capsys):
    kept = (run / "config.yaml").read_bytes()
    (run / "config.yaml").write_bytes(bytes(range(128, 256)))
    one_line_error(capsys, train_again(run), "config.yaml", "damaged")
    (run / "config.yaml").write_bytes(kept)
    (run / "final.json").write_text("{not json")
    one_line_error(capsys, train_again(run), "final.json", "remove it")
    (run / "final.json").unlink()
    (run / "model.pt").unlink()
    (run / "metrics.csv").write_bytes(bytes(range(128, 256)))
    one_line_error(capsys, train_again(run), "metrics.csv", "not CSV text", "remove it")
    (run / "metrics.csv").write_text("step,loss\nx,1\n")
    one_line_error(capsys, train_again(run), "metrics.csv", "step")
    (run / "metrics.csv").unlink()
    (run / "eval.csv").write_bytes(bytes(range(128, 256)))
    one_line_error(capsys, train_again(run), "eval.csv", "not CSV text")
    (run / "eval.csv").unlink()
    (run / "run.json").write_text("[")
    one_line_error(capsys, train_again(run), "run.json", "damaged")
    (run / "checkpoints" / "LATEST").write_text("step-000000003\n")
    one_line_error(capsys, train_again(run), "LATEST", "remove")


# --------------------------------------------------------------------------- 6. one checkpoint


def test_a_resumed_run_keeps_one_checkpoint(run, capsys):
    """What a process killed while it replaced its checkpoint leaves (an older checkpoint, a
    half-written one, a pointer's temporary file) is gone once the run resumes and finishes."""
    unfinish(run)
    root = run / "checkpoints"
    newest = checkpoint(run).name
    shutil.copytree(root / newest, root / "step-000000002")
    (root / f".tmp-{newest}-12345").mkdir()
    (root / ".LATEST.abc.tmp").write_text("step-000000002\n")
    code, _, err = run_cli(capsys, train_again(run))
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", newest]
    assert (run / "final.json").exists() and (run / "model.pt").exists()


def test_a_damaged_collection_state(dataset, tmp_path, capsys):
    """Resuming a collection reads the collector state of its last chunk: checked first."""
    out = Path(shutil.copytree(dataset, tmp_path / "d"))
    state = next(out.rglob("collector.pt"))
    flip_tensor_byte(state) if zipfile.is_zipfile(state) else flip_byte(state)
    more = ["data", "collect", GAME, "--out", out, "--steps", "60", *TINY[:3]]
    one_line_error(capsys, more, str(state), "SHA-256", f"remove {out}")
