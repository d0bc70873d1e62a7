"""What every entrypoint does around its work: the status it records and how it exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException

from litlab.config_flags import CONF_DIR
from litlab.entry import mode_known, run_entrypoint


def test_a_setting_lightning_cannot_run_is_a_one_paragraph_user_error(cfg_factory, tmp_path, capsys):
    def work(cfg):
        raise MisconfigurationException("`val_check_interval` must be\n  at most the number of batches.")

    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(work, cfg_factory())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Error: `val_check_interval` must be at most the number of batches." in err and "Traceback" not in err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"].startswith("`val_check_interval` must be at most")


def test_a_path_with_a_name_too_long_is_a_one_paragraph_user_error_naming_its_key(cfg_factory, tmp_path, capsys):
    """The OS's "[Errno 36] File name too long" about a path the user gave (eval's ckpt_path, say)
    ended in a traceback and exit status 1."""
    ckpt = tmp_path / ("x" * 300) / "best.ckpt"

    def work(cfg):
        Path(cfg.ckpt_path).is_dir()  # as checkpoint_files.load_checkpoint does first

    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(work, cfg_factory([f"ckpt_path={ckpt}"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"Error: ckpt_path={ckpt}: a name in this path is too long for the file system (the limit per file or " \
           f"folder name is usually 255 bytes" in err and "Traceback" not in err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"].startswith(f"ckpt_path={ckpt}: a name in this path is too long")


@pytest.mark.parametrize("flags,composed", [([], 2), (["--config-name", "train"], 2),
                                            (["-cp", str(CONF_DIR), "-cd", str(CONF_DIR / "paths"), "--run"], 2)])
def test_a_run_composes_its_config_once_before_hydra_and_once_in_it(monkeypatch, tmp_path, flags, composed):
    """``check_cli`` composes the command's config and hands Hydra its ``hydra.mode``: Hydra then
    composes it once more for the run (three times before, ~0.3 s each at start-up). Also with
    Hydra's config flags, which ``check_cli`` now composes with as Hydra does (it skipped them)."""
    import sys

    from hydra._internal.hydra import Hydra

    import litlab.train as command

    runs, seen = [], {}
    compose, get_mode = Hydra.compose_config, Hydra.get_mode

    def counted(self, *args, **kwargs):
        runs.append(kwargs.get("run_mode"))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", counted)
    monkeypatch.setattr(command, "_train", lambda cfg: seen.setdefault("cfg", cfg) and 0.5)
    monkeypatch.setattr(sys, "argv", ["litlab.train", *flags, f"hydra.run.dir={tmp_path / 'run'}",
                                      "hydra/job_logging=none", "hydra/hydra_logging=none", "trainer.max_epochs=3"])
    command.main()
    assert len(runs) == composed
    assert seen["cfg"].trainer.max_epochs == 3 and (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert Hydra.get_mode is get_mode  # put back


@pytest.mark.parametrize("argv", [["--experimental-rerun", "config.pickle"], ["--bogus", "seed=1"], ["--cfg", "job"]])
def test_hydra_finds_the_mode_itself_under_flags_check_cli_did_not_compose_with(cfg_factory, argv):
    """Only overrides and config flags compose what ``check_cli`` composed: under any other flag
    Hydra's own ``get_mode`` stays in place."""
    from hydra._internal.hydra import Hydra

    original = Hydra.get_mode
    with mode_known(argv, cfg_factory()):
        assert Hydra.get_mode is original
    with mode_known(["-cn", "train", "seed=1"], cfg_factory()):
        assert Hydra.get_mode is not original
    assert Hydra.get_mode is original


@pytest.mark.parametrize("existing", [False, True])
def test_a_refused_command_leaves_no_folder_the_checks_made(tmp_path, existing):
    """The checks hold a named run folder (making it) before they refuse: the refusal removes what
    they made, and only that: a folder the user made beforehand stays."""
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "a" / "eval"
    if existing:
        run_dir.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "litlab.eval", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "ckpt_path is required" in proc.stderr
    if existing:
        assert run_dir.is_dir() and not any(run_dir.iterdir())
    else:
        assert not (tmp_path / "runs").exists()


def test_removing_made_folders_keeps_a_folder_something_was_written_into(tmp_path):
    from litlab import run_lock

    run_dir = tmp_path / "x" / "run"
    run_lock.hold_run_dir(run_dir, "hydra.run.dir")
    assert run_lock.holds(run_dir)
    (run_dir / "kept.txt").write_text("mine")
    run_lock.remove_made_folders()
    assert (run_dir / "kept.txt").read_text() == "mine" and not run_lock.holds(run_dir)
    other = tmp_path / "y" / "z" / "run"
    run_lock.hold_run_dir(other, "hydra.run.dir")
    run_lock.remove_made_folders()
    assert not (tmp_path / "y").exists() and not run_lock.holds(other)


def test_a_dot_dot_path_removes_only_the_folder_it_made(tmp_path):
    """``hydra.run.dir=outputs/new/../x`` with the user's empty ``outputs/x``: mkdir makes
    ``outputs/new`` only; the refusal removes that one and keeps ``outputs/x``."""
    import subprocess
    import sys

    (tmp_path / "outputs" / "x").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "litlab.eval", "hydra.run.dir=outputs/new/../x"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "ckpt_path is required" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["x"]


def test_a_folder_made_here_but_held_by_another_command_first_is_left_to_it(tmp_path, monkeypatch):
    """The folder is made by this command, and another one locks it before this one does: this
    one is refused as in use, and its refusal must not remove the other's folder."""
    import subprocess
    import sys

    from litlab import run_lock

    run_dir = tmp_path / "a" / "run"
    holder = None
    real_open = run_lock.os.open

    def open_after_another_holds(path, flags, *args):
        nonlocal holder
        if holder is None and Path(path) == run_dir:
            holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                                       f"fd = os.open({str(run_dir)!r}, os.O_RDONLY)\n"
                                       "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)"],
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "held"
        return real_open(path, flags, *args)

    monkeypatch.setattr(run_lock.os, "open", open_after_another_holds)
    try:
        with pytest.raises(Exception, match="is in use"):
            run_lock.hold_run_dir(run_dir, "hydra.run.dir")
        run_lock.remove_made_folders()
        assert run_dir.is_dir()
    finally:
        holder.kill()
        holder.wait()


def test_on_a_file_system_without_locks_the_made_folders_are_removed_too(tmp_path, monkeypatch):
    import errno

    from litlab import run_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    run_dir = tmp_path / "out" / "run"
    run_lock.hold_run_dir(run_dir, "hydra.run.dir")
    assert run_dir.is_dir()
    run_lock.remove_made_folders()
    assert not (tmp_path / "out").exists()
