"""The command line: what the small commands print; bad input is one line and exit code 2
(every subcommand's --help: test_cli_layout.py; every kind of bad input: test_bad_input.py)."""

from __future__ import annotations

from xtra.cli import main


def test_games_lists_the_registry(capsys):
    assert main(["games", "--set", "maze"]) == 0
    out = capsys.readouterr().out
    for game in ("Alien", "Amidar", "BankHeist", "MsPacman", "WizardOfWor"):
        assert game in out


def test_env_check_saves_a_frame_strip(tmp_path, capsys):
    png = tmp_path / "strip.png"
    assert main(["env", "check", "minatar/breakout", "--steps", "20", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "legal actions (ALE ids): [0, 4, 3]" in capsys.readouterr().out


def test_config_show_applies_overrides(capsys):
    assert main(["config", "show", "--preset", "cpu", "--set", "search.num_simulations=3"]) == 0
    assert "num_simulations: 3" in capsys.readouterr().out


def _one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0], err[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    _one_line_error(capsys, ["env", "check", "Brekout"], "did you mean Breakout")
    _one_line_error(capsys, ["config", "show", "--preset", "huge"], "unknown preset 'huge'")
    _one_line_error(capsys, ["config", "show", "--set", "search.num_simulations=0"], "out of range")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {num_simulations: [\n")
    _one_line_error(capsys, ["config", "show", "--config", str(bad)], "is not valid YAML")
    _one_line_error(capsys, ["games", "--set", "nope"], "unknown game set 'nope'")


def test_missing_rom_is_one_line(monkeypatch, capsys):
    from ale_py import roms

    monkeypatch.setattr(roms, "get_rom_path", lambda rom_id: None)
    _one_line_error(
        capsys, ["env", "check", "Breakout", "--steps", "1"], "ROM of Breakout is missing"
    )


def test_device_is_the_same_as_set_device_applied_last(capsys):
    assert main(["config", "show", "--preset", "tiny", "--device", "cpu"]) == 0
    assert "\ndevice: cpu" in capsys.readouterr().out
    assert main(["config", "show", "--set", "device=cuda:1", "--device", "cpu"]) == 0
    assert "\ndevice: cpu" in capsys.readouterr().out
    # Showing a GPU config needs no GPU.
    assert main(["config", "show", "--device", "cuda"]) == 0
    assert "\ndevice: cuda" in capsys.readouterr().out
    _one_line_error(capsys, ["config", "show", "--device", "tpu"], "device='tpu' is not allowed")
