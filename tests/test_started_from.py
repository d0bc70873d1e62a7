"""A run started from another run's checkpoint records that checkpoint as it begins (``started_from``),
so that a start stopped or failed before Lightning restored it resumes from it in its folder, and
its folder's record and messages say so."""

from __future__ import annotations

import json
import os
import shlex
import signal
import time

import lightning.pytorch as L
import pytest

from litlab.config_check import check_overrides
from litlab.entry import run_entrypoint
from litlab.errors import LitlabError
from litlab.training import train
from tests.conftest import make_cfg

SHORT = ["model=mlp", "test=false", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=3"]


class SignalInSetup(L.Callback):
    """Sends this process SIGTERM in fit's set-up, before Lightning restores the checkpoint (where
    the data module's and the callbacks' setup run)."""

    def setup(self, trainer, pl_module, stage):
        if stage == "fit":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # litlab's SIGTERM handler raises before this ends
            raise AssertionError("SIGTERM did not stop the set-up")


class FailInSetup(L.Callback):
    """A crash in fit's set-up, before the restore."""

    def setup(self, trainer, pl_module, stage):
        if stage == "fit":
            raise RuntimeError("crashed in set-up")


def _record(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def keep_sigint():
    """Lightning ignores SIGINT for good once a KeyboardInterrupt (litlab's SIGTERM before its own
    handler is in place) reaches fit; put it back for the tests after."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.fixture(scope="module")
def start(tmp_path_factory, data_dir):
    """last.ckpt of S0, a run of one epoch: the checkpoint the runs of these tests start from."""
    run = tmp_path_factory.mktemp("s0")
    train(make_cfg([*SHORT, "trainer.max_epochs=1"], run, data_dir))
    return run / "checkpoints" / "last.ckpt"


def test_a_start_stopped_before_the_restore_resumes_from_its_checkpoint(cfg_factory, tmp_path, start, keep_sigint):
    """Stopped before Lightning restored S0's checkpoint (trainer.ckpt_path still unset), S1 recorded
    "no checkpoint yet, nothing to resume" and no started_from: the command that resumes it was refused
    in its folder ("a checkpoint of another run ... own run with ckpt_path=last"), and so was
    ckpt_path=last ("last.ckpt does not exist")."""
    stop = [f"ckpt_path={start}", "+callbacks.stop._target_=tests.test_started_from.SignalInSetup"]
    s1 = tmp_path / "s1"
    (s1 / ".hydra").mkdir(parents=True)  # the record Hydra writes: the resume command repeats its overrides
    (s1 / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*SHORT, f"ckpt_path={start}"]))
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train, cfg_factory([*SHORT, *stop], name="s1"))
    assert exit_info.value.code == 128 + signal.SIGTERM
    m = _record(s1)
    assert (m["status"], m["started_from"], m["last_ckpt"]) == ("interrupted", str(start), None)
    assert shlex.split(m["resume"]) == ["python", "-m", "litlab.train", *SHORT, f"ckpt_path={start}",
                                        f"hydra.run.dir={s1}"]
    assert "epochs" not in m and "global_step" not in m  # the trainer's counts before the restore: not the run's
    assert check_overrides(shlex.split(m["resume"])[3:]) is not None
    with pytest.raises(LitlabError, match=rf"ckpt_path=last: .*s1 holds no checkpoint: its run started from "
                                          rf"ckpt_path={start} and was interrupted before it wrote one of its own"):
        check_overrides([*SHORT, "ckpt_path=last", f"hydra.run.dir={s1}"])


def test_a_start_failed_before_the_restore_resumes_from_its_checkpoint(cfg_factory, tmp_path, start):
    """A crash (or a lost rank) before the restore left a record without the checkpoint the start
    began from: its folder refused the same command, and ckpt_path=last found no last.ckpt there."""
    s2 = tmp_path / "s2"
    with pytest.raises(RuntimeError, match="crashed in set-up"):
        run_entrypoint(train, cfg_factory([*SHORT, f"ckpt_path={start}",
                                           "+callbacks.crash._target_=tests.test_started_from.FailInSetup"], name="s2"))
    m = _record(s2)
    assert (m["status"], m.get("started_from")) == ("failed", str(start)) and "crashed in set-up" in m["error"]
    assert check_overrides([*SHORT, f"ckpt_path={start}", f"hydra.run.dir={s2}"]) is not None
    with pytest.raises(LitlabError, match=rf"already holds a run\. It failed before its first checkpoint; resume it "
                                          rf"from the checkpoint it started from with ckpt_path={start} \(the command "
                                          rf"it was started with"):
        check_overrides([*SHORT, f"hydra.run.dir={s2}"])
    with pytest.raises(LitlabError, match=rf"ckpt_path=last: .*s2 holds no checkpoint: its run started from "
                                          rf"ckpt_path={start} and failed before"):
        check_overrides([*SHORT, "ckpt_path=last", f"hydra.run.dir={s2}"])


def test_another_runs_checkpoint_into_a_folder_that_nothing_resumes_names_no_ckpt_path_last(tmp_path):
    """The refusal advised "this folder's own run with ckpt_path=last" for a folder without a checkpoint."""
    other, run = tmp_path / "a", tmp_path / "b"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "last.ckpt").write_bytes(b"x")
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "interrupted", "task": "train"}')
    with pytest.raises(LitlabError) as info:
        check_overrides([f"hydra.run.dir={run}", f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}"])
    assert "ckpt_path=last" not in str(info.value)
    assert ("Resume the other run in a new folder (leave hydra.run.dir out); this folder's run stopped before its "
            "first checkpoint and cannot be resumed; litlab does not write over a run.") in str(info.value)


@pytest.mark.parametrize("stop", ["ctrl-c", "crash"])
def test_a_start_stopped_while_litlab_prepares_the_data_resumes_from_its_checkpoint(cfg_factory, tmp_path, start,
                                                                                    monkeypatch, stop):
    """Ctrl-C or a crash in litlab's own data preparation (build_data, the long part of a start: an
    image folder scanned, the digits written) came before train's first record: entry's record had
    no started_from, and the same command was refused in its folder as "another run's checkpoint
    ... this folder's run stopped before its first checkpoint and cannot be resumed", though nothing
    had been trained."""
    def build_data(cfg):
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        raise RuntimeError("crashed preparing the data")

    monkeypatch.setattr("litlab.training.build_data", build_data)
    s3 = tmp_path / "s3"
    (s3 / ".hydra").mkdir(parents=True)
    (s3 / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*SHORT, f"ckpt_path={start}"]))
    with pytest.raises(SystemExit if stop == "ctrl-c" else RuntimeError) as info:
        run_entrypoint(train, cfg_factory([*SHORT, f"ckpt_path={start}"], name="s3"))
    m = _record(s3)
    assert (m["status"], m.get("started_from"), m["task"]) == (
        ("interrupted" if stop == "ctrl-c" else "failed"), str(start), "train")
    if stop == "ctrl-c":
        assert info.value.code == 128 + signal.SIGINT
        assert shlex.split(m["resume"]) == ["python", "-m", "litlab.train", *SHORT, f"ckpt_path={start}",
                                            f"hydra.run.dir={s3}"]
    else:
        assert "resume" not in m  # the command it was started with, once the error is mended
    assert check_overrides([*SHORT, f"ckpt_path={start}", f"hydra.run.dir={s3}"]) is not None
    ended = "was interrupted" if stop == "ctrl-c" else "failed"
    with pytest.raises(LitlabError, match=rf"already holds a run\. It {ended} before its first checkpoint; resume "
                                          rf"it from the checkpoint it started from with ckpt_path={start} "):
        check_overrides([*SHORT, f"hydra.run.dir={s3}"])


def test_a_start_refused_before_its_checkpoint_was_read_names_none(cfg_factory, tmp_path):
    """ckpt_path=last in a new folder and a path to no file name no checkpoint the folder's run could
    resume from: their records have no started_from."""
    for name, ckpt in (("l", "last"), ("n", str(tmp_path / "no" / "such.ckpt"))):
        with pytest.raises(SystemExit):
            run_entrypoint(train, cfg_factory([*SHORT, f"ckpt_path={ckpt}"], name=name))
        m = _record(tmp_path / name)
        assert m["status"] == "failed" and "started_from" not in m, m


def test_a_lost_rank_of_a_start_without_a_checkpoint_of_its_own_names_the_one_it_started_from(tmp_path):
    """A rank lost before the start wrote a checkpoint of its own: "No checkpoint of this run can be
    resumed; start it again", where the one it started from resumes it in its folder."""
    from litlab.distributed.rank_faults import resume_hint

    other = tmp_path / "other.ckpt"
    other.write_bytes(b"x")
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- model=mlp\n- ckpt_path={other}\n")
    (run / "checkpoints").mkdir()
    (run / "metrics.json").write_text(json.dumps({"status": "failed", "task": "train", "started_from": str(other)}))
    hint = resume_hint(run, "train")
    assert hint.startswith("This start wrote no checkpoint of its own; resume it from the one it started from with: ")
    assert shlex.split(hint.split("with: ", 1)[1]) == ["python", "-m", "litlab.train", "model=mlp",
                                                        f"ckpt_path={other}", f"hydra.run.dir={run}"]
    (run / "checkpoints" / "best.ckpt").write_bytes(b"x")  # one of its own, not last.ckpt: as before
    assert resume_hint(run, "train") == "No checkpoint of this run can be resumed; start it again."
    assert resume_hint(run, "eval") == "No checkpoint of this run can be resumed; start it again."
