"""``python -m litlab.train ckpt_path=/no/such.ckpt`` reported the missing file only after torch
and Lightning were imported (~10-30 s), into a run folder Hydra had made for it (its config
record, train.log and a failed metrics.json). The command-line checks name it before any of that,
as eval's and predict's do, for each value of a sweep over ckpt_path too. So are a compressed model
(no training checkpoint) and ``ckpt_path=last`` where the run's folder holds no last.ckpt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
from torch import nn

from litlab.config_check import check_overrides
from litlab.errors import LitlabError

WANTED = "a litlab run's checkpoint (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt)"


def test_a_wrong_ckpt_path_is_named_before_torch_and_before_any_folder(tmp_path):
    """Every case in one process (one interpreter start-up): its exit status, its message (the one
    the run gave when it read the checkpoint), whether torch was imported, and no folder written."""
    missing, folder, good = tmp_path / "nope.ckpt", tmp_path / "folder.ckpt", tmp_path / "good.ckpt"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    good.write_bytes(b"not read before torch is imported")
    pruned = _compressed_model(tmp_path / "old" / "compressed" / "prune.pt")
    no_file = f"ckpt_path={missing} does not exist. Give the path of {WANTED}."  # as the run said when it read it
    cases = [
        ([f"ckpt_path={missing}", "hydra.run.dir=run"], no_file),
        ([f"ckpt_path={missing}"], no_file),  # into outputs/runs/<time>
        ([f"ckpt_path={folder}", "hydra.run.dir=run"],
         f"ckpt_path={folder} is a folder, not a file; it holds {folder / 'checkpoints' / 'last.ckpt'}. Give the path "
         f"of {WANTED}."),
        (["-m", f"ckpt_path={good},{missing}", "hydra.sweep.dir=sweep"], no_file),  # each swept value, before job 0
        # made the folder tree (.hydra/, train.log, a failed metrics.json), then "last.ckpt does not exist"
        (["ckpt_path=last", "hydra.run.dir=gone/run"],
         f"ckpt_path=last resumes the run in the folder given by hydra.run.dir, and hydra.run.dir=gone/run does not "
         f"exist. {LAST_NEEDS_A_RUN}"),
        # passed the early check, and was refused once torch had loaded it (in a folder marked failed)
        ([f"ckpt_path={pruned}", "hydra.run.dir=run"], f"ckpt_path={pruned} is a compressed model (prune), {NEEDED}"),
        # every job failed ("0/checkpoints/last.ckpt does not exist"), then "every job of this sweep failed"
        (["-m", "model.optimizer.lr=1e-3,2e-3", "ckpt_path=last"], sweep_last("SWEEP_DIR")),
    ]
    probe = ("import json, runpy, sys\n"
             f"for args, _ in {cases!r}:\n"
             "    sys.argv = ['litlab.train', *args]\n"
             "    try:\n"
             "        runpy.run_module('litlab.train', run_name='__main__')\n"
             "        code = 0\n"
             "    except SystemExit as e:\n"
             "        code = e.code\n"
             "    print('case', json.dumps([code, 'torch' in sys.modules]), flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "LITLAB_ROOT"}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("case ")]
    messages = [line.removeprefix("Error: ") for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(results) == len(cases) and len(messages) == len(cases), proc.stderr[-3000:]
    for (args, message), (code, torch_imported), got in zip(cases, results, messages):
        assert (code, got, torch_imported) == (2, message, False), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.ckpt", "good.ckpt", "old"]  # no run, sweep, outputs/


# what load_checkpoint says of a compressed model where a training checkpoint is needed (after its method)
NEEDED = ("which eval and predict take; here a training checkpoint is needed: the checkpoints/best.ckpt or "
          "last.ckpt of the run that wrote it.")
LAST_NEEDS_A_RUN = ("Pass hydra.run.dir=outputs/runs/<run> with the run's folder, or ckpt_path=PATH with a checkpoint "
                    "file.")


def sweep_last(where):
    """The refusal of ``ckpt_path=last`` in a sweep whose folder is ``where``."""
    return (f"ckpt_path=last resumes a run in its own folder, and a sweep gives each of its jobs a new folder, which "
            f"holds no checkpoint: every job would fail. A sweep's jobs go on one by one, each as a run in its folder "
            f"of the sweep: python -m litlab.train <the job's overrides> ckpt_path=last hydra.run.dir={where}/<job> "
            f"(an interrupted job's metrics.json holds that command as resume, and python -m litlab.summarize {where} "
            f"lists the jobs with their overrides and the commands of those that never started).")


def test_a_sweep_with_ckpt_path_last_is_refused_with_how_its_jobs_go_on(tmp_path):
    """``-m ... ckpt_path=last hydra.sweep.dir=<an interrupted sweep>``, as if to resume it: the
    ckpt_path refusal says how (not only "already holds a sweep"), and the command it gives for a job
    passes the checks in that job's folder."""
    sweep = tmp_path / "sweep"
    (sweep / "multirun.yaml").parent.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    _run(sweep / "0", {"status": "interrupted", "task": "train"}, ["last.ckpt"])
    for args in (["-m", "model=mlp,cnn"], ["hparams_search=digits_optuna"]):
        with pytest.raises(LitlabError) as info:
            check_overrides([*args, "ckpt_path=last", f"hydra.sweep.dir={sweep}"])
        assert str(info.value) == sweep_last(sweep)
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "multirun.yaml"]
    assert check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={sweep / '0'}"]).ckpt_path == "last"


def _compressed_model(path):
    """A compressed model as compression writes it (``compressed/prune.pt``) of a tiny net."""
    from litlab.compression.artifacts import save

    save(path, nn.Linear(2, 2), {"task": "train"}, types.SimpleNamespace(name="prune", cpu_only=False), {}, {})
    return path


def _run(path, record=None, checkpoints=()):
    """A run folder as a start leaves it: its Hydra record, ``metrics.json`` with ``record`` and the
    named files in ``checkpoints/``."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("- model=mlp\n")
    if record is not None:
        (path / "metrics.json").write_text(json.dumps(record))
    for name in checkpoints:
        (path / "checkpoints").mkdir(exist_ok=True)
        (path / "checkpoints" / name).write_bytes(b"not read by the checks")
    return path


def test_ckpt_path_last_without_last_ckpt_is_refused_with_what_to_do(tmp_path):
    """A folder whose run stopped or was killed before its first checkpoint, or that holds no run,
    passed the checks: the run failed with ".../last.ckpt does not exist" after Hydra had rewritten
    the folder's record. It is named before anything is written; a killed run with last.ckpt resumes."""
    stopped = _run(tmp_path / "stopped", {"status": "interrupted", "task": "train"})
    killed = _run(tmp_path / "killed", {"status": "running", "task": "train"})  # no command holds it: killed
    empty = _run(tmp_path / "empty")  # its start ended before it wrote a record
    best_only = _run(tmp_path / "best_only", {"status": "interrupted", "task": "train"}, ["best.ckpt"])
    cannot = "It stopped before its first checkpoint, so it cannot be resumed: choose a new folder, or delete"
    for run, message in (
            (stopped, f"ckpt_path=last: {stopped} holds no checkpoint. {cannot} {stopped} to start over there."),
            (killed, f"ckpt_path=last: {killed} holds no checkpoint. {cannot} {killed} to start over there."),
            (empty, f"ckpt_path=last: hydra.run.dir={empty} holds no run to resume (no metrics.json, no "
                    f"checkpoints/last.ckpt). {LAST_NEEDS_A_RUN}"),
            (best_only, f"ckpt_path=last: {best_only} holds no checkpoints/last.ckpt, only "
                        f"{best_only / 'checkpoints' / 'best.ckpt'}. Resume from one of those with ckpt_path=PATH, "
                        f"or choose a new folder.")):
        with pytest.raises(LitlabError) as info:
            check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={run}"])
        assert str(info.value) == message
        assert (run / ".hydra" / "overrides.yaml").read_text() == "- model=mlp\n"
    assert sorted(p.name for p in killed.iterdir()) == [".hydra", "metrics.json"]
    (killed / "checkpoints").mkdir()
    (killed / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert check_overrides(["model=mlp", "ckpt_path=last", f"hydra.run.dir={killed}"]).ckpt_path == "last"


def test_a_compressed_model_is_no_checkpoint_to_resume(tmp_path):
    """Told from the file's first bytes, whatever its name: a copy named like a checkpoint is refused
    too, and a training checkpoint (no ``format`` key first) passes."""
    import torch

    pruned = _compressed_model(tmp_path / "run" / "compressed" / "prune.pt")
    renamed = tmp_path / "renamed.ckpt"
    renamed.write_bytes(pruned.read_bytes())
    for path in (pruned, renamed):
        with pytest.raises(LitlabError) as info:
            check_overrides([f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'new'}"])
        assert str(info.value) == f"ckpt_path={path} is a compressed model (prune), {NEEDED}"
    trained = tmp_path / "last.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(2)}, "litlab": {}}, trained)
    assert check_overrides([f"ckpt_path={trained}", f"hydra.run.dir={tmp_path / 'new'}"]) is not None


@pytest.mark.parametrize("values", ["last,null", "null,last"])
def test_a_sweep_over_ckpt_path_with_last_among_its_values_is_refused(tmp_path, values):
    """Only the last composed job reached the sweep's ``ckpt_path=last`` refusal: ``last,null``
    passed (its job 0 then failed on a last.ckpt its new folder could not hold) while ``null,last``
    was refused. Either order is refused, and no sweep folder is made."""
    sweep = tmp_path / "sweep"
    with pytest.raises(LitlabError) as info:
        check_overrides(["-m", "model=mlp", "trainer.max_epochs=1", f"ckpt_path={values}", f"hydra.sweep.dir={sweep}"])
    assert str(info.value) == sweep_last(sweep)
    assert not sweep.exists()
