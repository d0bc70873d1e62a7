"""``python -m litlab.train ckpt_path=/no/such.ckpt`` reported the missing file only after torch
and Lightning were imported (~10-30 s), into a run folder Hydra had made for it (its config
record, train.log and a failed metrics.json). The command-line checks name it before any of that,
as eval's and predict's do, for each value of a sweep over ckpt_path too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

WANTED = "a litlab run's checkpoint (outputs/runs/<run>/checkpoints/best.ckpt or last.ckpt)"


def test_a_wrong_ckpt_path_is_named_before_torch_and_before_any_folder(tmp_path):
    """Every case in one process (one interpreter start-up): its exit status, its message (the one
    the run gave when it read the checkpoint), whether torch was imported, and no folder written."""
    missing, folder, good = tmp_path / "nope.ckpt", tmp_path / "folder.ckpt", tmp_path / "good.ckpt"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    good.write_bytes(b"not read before torch is imported")
    no_file = f"ckpt_path={missing} does not exist. Give the path of {WANTED}."  # as the run said when it read it
    cases = [
        ([f"ckpt_path={missing}", "hydra.run.dir=run"], no_file),
        ([f"ckpt_path={missing}"], no_file),  # into outputs/runs/<time>
        ([f"ckpt_path={folder}", "hydra.run.dir=run"],
         f"ckpt_path={folder} is a folder, not a file; it holds {folder / 'checkpoints' / 'last.ckpt'}. Give the path "
         f"of {WANTED}."),
        (["-m", f"ckpt_path={good},{missing}", "hydra.sweep.dir=sweep"], no_file),  # each swept value, before job 0
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.ckpt", "good.ckpt"]  # no run, sweep or outputs/
