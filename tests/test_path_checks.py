"""Folders that cannot be folders are named before any work (run_folders.py): a read-only data folder,
one under a file, a symbolic link to nowhere, a name too long. Each was a traceback (exit 1) from
``exists()`` or ``mkdir`` inside the run, or from the checks before it."""

from __future__ import annotations

import errno
import os
import shlex
from pathlib import Path

import pytest

from litlab.config_check import check_overrides
from litlab.errors import LitlabError

LONG = "x" * 300  # a name longer than the 255 bytes most file systems allow


def refused(args: list[str]) -> str:
    """The one-paragraph message ``check_overrides`` refuses ``args`` with."""
    with pytest.raises(LitlabError) as info:
        check_overrides(args, "train")
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def read_only(monkeypatch, tmp_path) -> Path:
    """A folder whose file system refuses writes (EROFS), as a read-only mount does: as root, chmod does not."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open, real_mkdir = os.open, Path.mkdir

    def open_(path, *args, **kwargs):
        if str(path).startswith(str(folder)) and Path(path) != folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        if Path(path) == folder and args and args[0] & (os.O_WRONLY | os.O_RDWR):  # O_TMPFILE opens the folder
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(folder)) and self != folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    return folder


def test_a_read_only_data_folder_is_named_before_any_work(tmp_path, read_only):
    """paths.data_dir=/ro/data failed with OSError [Errno 30] as the digits were written."""
    data = read_only / "data"
    message = refused([f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={data}"])
    assert message == (f"paths.data_dir={data} cannot hold the datasets litlab prepares (the digits are written "
                       f"into it): {read_only} is not writable (Read-only file system). Give another folder with "
                       f"paths.data_dir=DIR.")
    # a shared, read-only copy of the written digits is read, not written: it is not refused
    (tmp_path / "shared" / "digits").mkdir(parents=True)
    (tmp_path / "shared" / "digits" / "split.json").write_text("{}")
    os.rename(tmp_path / "shared", read_only / "data")
    assert check_overrides([f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={read_only / 'data'}"]) is not None


@pytest.mark.parametrize("where,problem", [
    ("under_a_file", "{tmp}/afile is a file, not a folder"),  # NotADirectoryError
    ("dangling", "{tmp}/dangling is a symbolic link to {tmp}/nowhere, a target that does not exist"),  # FileExistsError
    ("loop", "{tmp}/loop is a symbolic link to loop, a loop of symbolic links"),
    ("long", f"the name {LONG} is too long: 300 bytes, where the file system allows at most"),  # ENAMETOOLONG
])
def test_a_data_folder_that_cannot_be_one_is_named_before_any_work(tmp_path, where, problem):
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink("loop", tmp_path / "loop")
    data = {"under_a_file": tmp_path / "afile" / "data", "dangling": tmp_path / "dangling",
            "loop": tmp_path / "loop", "long": tmp_path / LONG}[where]
    message = refused([f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={data}"])
    assert message.startswith(f"paths.data_dir={data} cannot hold the datasets litlab prepares (the digits are "
                              f"written into it): {problem.format(tmp=tmp_path)}")
    assert message.endswith("Give another folder with paths.data_dir=DIR.")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("key", ["hydra.run.dir", "paths.log_dir", "paths.data_dir"])
def test_a_name_too_long_is_named_before_any_work(tmp_path, key):
    """hydra.run.dir=/tmp/pw/xxx...(300) failed in check_writable's exists() with OSError ENAMETOOLONG."""
    folder = tmp_path / LONG
    args = {"hydra.run.dir": [f"hydra.run.dir={folder}"], "paths.log_dir": [f"paths.log_dir={folder}"],
            "paths.data_dir": [f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={folder}"]}[key]
    message = refused(args)
    assert message.startswith(f"{key}={folder} cannot hold the ")
    assert f": the name {LONG} is too long: 300 bytes, where the file system allows at most " in message
    assert f"with {key}=DIR" in message and not os.path.lexists(folder)


@pytest.mark.parametrize("target,what", [("nowhere", "a target that does not exist"),
                                         ("link", "a loop of symbolic links")])
@pytest.mark.parametrize("sweep", [False, True])
def test_a_run_folder_that_is_a_link_to_nowhere_is_named_before_any_work(tmp_path, target, what, sweep):
    """hydra.run.dir naming a symbolic link to a missing folder failed with FileExistsError from mkdir
    (a sweep's folder passed the checks and failed inside Hydra)."""
    link = tmp_path / "link"
    os.symlink(target, link)
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    message = refused((["-m", "seed=1,2"] if sweep else []) + [f"{key}={link}"])
    assert message == (f"{key}={link} cannot hold the run's outputs: {link} is a symbolic link to {target}, {what}. "
                       f"Choose another folder with {key}=DIR (or paths.log_dir=DIR).")
    assert os.readlink(link) == target and not (tmp_path / "nowhere").exists()


def test_the_command_prints_one_paragraph_and_exits_2(tmp_path, capsys):
    from litlab.entry import check_cli

    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(SystemExit) as info:
        check_cli([f"hydra.run.dir={tmp_path / 'link'}"], "train")
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f"Error: hydra.run.dir={tmp_path / 'link'} cannot hold the run's "
                                              f"outputs: {tmp_path / 'link'} is a symbolic link")


def test_a_run_folder_that_cannot_be_made_is_one_paragraph(tmp_path):
    """hold_run_dir's mkdir, should a folder turn bad after the checks."""
    from litlab.run_lock import hold_run_dir

    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(LitlabError, match=r"^hydra\.run\.dir=.*link cannot be made into the run's folder \(File "
                                          r"exists\)\. Choose another folder with hydra\.run\.dir=DIR\.$"):
        hold_run_dir(tmp_path / "link", "hydra.run.dir")


@pytest.mark.parametrize("where", ["read_only", "under_a_file", "dangling"])
def test_digits_that_cannot_be_written_are_one_paragraph(tmp_path, request, where):
    """What the checks before the run do not see (eval writes a checkpoint's digits where training did)."""
    from litlab.data.digits import write_digits_tree

    if where == "read_only":
        root = request.getfixturevalue("read_only") / "data" / "digits"
        reason = f"Read-only file system ({root.parent})"
    elif where == "under_a_file":
        (tmp_path / "afile").write_text("x")
        root, reason = tmp_path / "afile" / "data" / "digits", f"Not a directory ({tmp_path / 'afile' / 'data'})"
    else:
        os.symlink(tmp_path / "nowhere", tmp_path / "data")
        root, reason = tmp_path / "data" / "digits", f"File exists ({tmp_path / 'data'})"
    with pytest.raises(LitlabError) as info:
        write_digits_tree(root, 0.15, 0.2)
    assert str(info.value) == (
        f"data.root={root}: the digits cannot be written there: {reason}. They go to ${{paths.data_dir}}/digits "
        f"unless data.root says otherwise: give a folder this process can write, with paths.data_dir=DIR (or "
        f"data.root=DIR).")
    assert not (tmp_path / "nowhere").exists()


def tensorboard_command(run: Path) -> str:
    """The TensorBoard command of a run's printed summary."""
    from litlab.reporting.summary import format_summary

    line = [ln for ln in format_summary(run, {"status": "completed"}, True).splitlines() if "--logdir" in ln][0]
    return line.split("open in TensorBoard:", 1)[1].strip()


@pytest.mark.parametrize("name", ["my runs, v2", "it's"])
def test_the_tensorboard_command_runs_as_pasted(tmp_path, name):
    """A run folder with spaces, commas or quotes gave a command that failed when pasted into a shell."""
    run = tmp_path / name
    assert shlex.split(tensorboard_command(run)) == ["tensorboard", "--logdir", str(run / "tensorboard")]
    plain = tmp_path / "plain-run_1"  # a plain path is printed as it is
    assert tensorboard_command(plain) == f"tensorboard --logdir {plain / 'tensorboard'}"


def test_eval_and_predict_name_a_wrong_path_before_importing_torch(tmp_path):
    """A mistyped ckpt_path or input= was reported only after torch and Lightning were imported
    (~8 s of CPU); train reported its mistakes in well under 2. Both entrypoints run in one process
    (one interpreter start-up), each case to its exit status, the message and whether torch was
    imported; a message is the one the in-process checks give."""
    import json
    import subprocess
    import sys

    (tmp_path / "folder.ckpt").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"not read before torch is imported")
    (tmp_path / "out").mkdir()
    wanted = ("a litlab run's checkpoint (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt) or compressed "
              "model (outputs/runs/<run>/compressed/<method>.pt)")
    ckpt, missing = tmp_path / "model.ckpt", tmp_path / "nope.ckpt"
    cases = [
        ("litlab.predict", [f"ckpt_path={missing}", "input=x.png"],
         f"ckpt_path={missing} does not exist. Give the path of {wanted}."),
        ("litlab.predict", [f"ckpt_path={tmp_path / 'folder.ckpt'}", "input=x.png"],
         f"ckpt_path={tmp_path / 'folder.ckpt'} is a folder, not a file. Give the path of {wanted}."),
        ("litlab.predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'x.png'}"],
         f"input={tmp_path / 'x.png'} does not exist. Give an image file, a folder of images or an .npz file."),
        ("litlab.predict", [f"ckpt_path={ckpt}", "input=x.png", f"output={tmp_path / 'out'}"],
         f"output={tmp_path / 'out'} is a folder. Give the path of the CSV file to write, e.g. "
         f"output={tmp_path / 'out' / 'predictions.csv'}."),
        ("litlab.eval", [f"ckpt_path={missing}"], f"ckpt_path={missing} does not exist. Give the path of {wanted}."),
        ("litlab.eval", [f"ckpt_path={ckpt}", f"data.root={tmp_path / 'imagez'}"],
         f"data.root={tmp_path / 'imagez'} is not a folder. Give the folder of the images to evaluate, holding "
         f"test/<class>/ (or val/<class>/ with split=val)."),
    ]
    probe = ("import json, runpy, sys\n"
             f"for i, (module, args, _) in enumerate({cases!r}):\n"
             "    sys.argv = [module, *args, f'hydra.run.dir=run{i}']\n"
             "    try:\n"
             "        runpy.run_module(module, run_name='__main__')\n"
             "        code = 0\n"
             "    except SystemExit as e:\n"
             "        code = e.code\n"
             "    print(json.dumps([code, 'torch' in sys.modules]), flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    messages = [line.removeprefix("Error: ") for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(results) == len(cases) and len(messages) == len(cases), proc.stderr[-3000:]
    for (module, args, message), (code, torch_imported), got in zip(cases, results, messages):
        assert (code, got) == (2, message), (module, args)
        assert not torch_imported, (module, args)
    assert not any((tmp_path / f"run{i}" / "metrics.json").exists() for i in range(len(cases)))
