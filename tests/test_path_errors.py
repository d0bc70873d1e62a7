"""Paths the file system refuses (a name over its length limit, a read-only folder, a file where a
folder should be) given to eval and predict: one paragraph naming the key, exit status 2 and the
failure recorded, never Hydra's "Set the environment variable HYDRA_FULL_ERROR=1" and a traceback."""

from __future__ import annotations

import builtins
import errno
import json
import os
from pathlib import Path

import pytest

from litlab.entry import run_entrypoint

LONG = "x" * 300  # one name over the usual limit of 255 bytes


def _predict(cfg):
    from litlab.prediction.run import predict

    return predict(cfg)


def _evaluate(cfg):
    from litlab.evaluation import evaluate

    return evaluate(cfg, [])


def _run(work, cfg, capsys) -> tuple[str, dict]:
    """Runs ``work`` as the entrypoint does; returns the one error line it printed and the run's record."""
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(work, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == lines[0].removeprefix("Error: ")
    return lines[0], record


def test_eval_ckpt_path_with_a_name_too_long(cfg_factory, tmp_path, capsys):
    ckpt = tmp_path / f"{LONG}.ckpt"
    line, _ = _run(_evaluate, cfg_factory([f"ckpt_path={ckpt}"], name="eval", config_name="eval", fast=False), capsys)
    assert line.startswith(f"Error: ckpt_path={ckpt}: a name in this path is too long")
    assert "usually 255 bytes" in line


@pytest.mark.parametrize("key", ["ckpt_path", "input", "output"])
def test_predict_paths_with_a_name_too_long(key, cfg_factory, tmp_path, capsys):
    paths = {"ckpt_path": tmp_path / "model.ckpt", "input": tmp_path / "in.npz", "output": tmp_path / "p.csv"}
    paths[key] = tmp_path / f"{LONG}.csv" if key == "output" else tmp_path / LONG
    cfg = cfg_factory([f"{k}={v}" for k, v in paths.items()], name="pred", config_name="predict", fast=False)
    line, _ = _run(_predict, cfg, capsys)
    assert line.startswith(f"Error: {key}={paths[key]}: a name in this path is too long (30")
    assert "longer than the 255 bytes the file system takes per file or folder name" in line


def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` as on a read-only file system (root ignores chmod): creating a file in it fails
    with EROFS, whether through open() or os.open() (which tempfile uses)."""
    real_open, real_os_open = builtins.open, os.open

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).absolute().is_relative_to(folder)

    def fake_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


def test_predict_output_in_a_read_only_folder(cfg_factory, tmp_path, capsys, monkeypatch):
    """It failed at the CSV's first write, after the model had loaded, with a bare OSError; now the
    folder is probed before the checkpoint is even read (ckpt_path here does not exist)."""
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    out = shelf / "p.csv"
    cfg = cfg_factory([f"ckpt_path={tmp_path / 'none.ckpt'}", f"input={tmp_path / 'in.npz'}", f"output={out}"],
                      name="pred", config_name="predict", fast=False)
    _read_only(monkeypatch, shelf)
    line, _ = _run(_predict, cfg, capsys)
    assert line == (f"Error: output={out}: the CSV cannot be written there: {shelf} is not writable (Read-only file system). Give a path "
                    f"in a folder this process can write, with output=PATH.")
    assert list(shelf.iterdir()) == []


def test_predict_output_under_a_file(cfg_factory, tmp_path, capsys):
    """It said "(File exists)" about the folder to be made, not that a file is in the way."""
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "sub" / "p.csv"
    cfg = cfg_factory([f"ckpt_path={tmp_path / 'none.ckpt'}", f"input={tmp_path / 'in.npz'}", f"output={out}"],
                      name="pred", config_name="predict", fast=False)
    line, _ = _run(_predict, cfg, capsys)
    assert line.startswith(f"Error: output={out}: the CSV cannot be written there: {tmp_path / 'afile'} is a file, "
                           f"not a folder")
    assert (tmp_path / "afile").read_text() == ""
