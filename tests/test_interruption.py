"""SIGTERM/SIGINT mid-run: a resumable checkpoint, status interrupted, and an exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, make_cfg

# the default data (digits, held in memory) in batches of 2, in epochs long enough (200 steps, half
# a second) to be interrupted in the middle of one; every step logged, so that the unfinished epoch
# always leaves points in the event files for a resume to drop; three epochs: a stop in the second
# leaves a whole one after it for the resume
EPOCHS = 3
ARGS = ["data.batch_size=2", "model=mlp", f"trainer.max_epochs={EPOCHS}", "logger=tensorboard", "seed=3",
        "+trainer.limit_train_batches=200", "trainer.log_every_n_steps=1"]


def _start(run_dir, *extra):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, "-m", "litlab.train", *ARGS, f"hydra.run.dir={run_dir}",
                             f"paths.data_dir={run_dir.parent / 'data'}", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout):
    """Waits for the process; one that hangs is made to print every thread's stack (faulthandler)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        err = proc.communicate(timeout=30)[1]
        pytest.fail(f"no exit {timeout} s after the signal; the stacks:\n{err[-6000:]}")


def _logged_past(run, step) -> bool:
    """Whether the run's event files hold a ``train/loss_step`` point at or after ``step``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return "train/loss_step" in events.Tags()["scalars"] and max(
        e.step for e in events.Scalars("train/loss_step")) >= step


def _interrupt_after_first_epoch(run, sig, expected_code, into_the_next_epoch=False):
    """Starts the run and sends ``sig`` once its first last.ckpt is written; ``into_the_next_epoch``:
    only once a step after that checkpoint is in the event files (a signal right at the epoch's end
    on a busy machine left nothing for a resume to drop)."""
    proc = _start(run, *(["logger.tensorboard.flush_every_s=0.05"] if into_the_next_epoch else []))
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.is_file(), proc.communicate()[1][-3000:]
    if into_the_next_epoch:
        saved = torch.load(last, weights_only=True)["global_step"]
        while not _logged_past(run, saved) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    proc.send_signal(sig)
    err = _wait(proc, 60)
    assert proc.returncode == expected_code, err[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "interrupted", m
    assert "ckpt_path=last" in m["resume"]
    assert torch.load(last, weights_only=True)["epoch"] < EPOCHS - 1  # it really stopped early
    # the best epoch so far is on record, as for a finished run
    assert 0 < m["val/acc"] <= 1 and Path(m["best_ckpt"]).is_file()


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted(tmp_path):
    _interrupt_after_first_epoch(tmp_path / "run", signal.SIGINT, expected_code=128 + signal.SIGINT)


@pytest.mark.slow
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path):
    run = tmp_path / "run"
    _interrupt_after_first_epoch(run, signal.SIGTERM, expected_code=128 + signal.SIGTERM, into_the_next_epoch=True)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # the stop came after steps of the unfinished epoch were logged: the resume must drop them
    stopped = EventAccumulator(str(run / "tensorboard"))
    stopped.Reload()
    saved_step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert max(e.step for e in stopped.Scalars("train/loss_step")) >= saved_step

    resumed = _start(run, "ckpt_path=last")
    err = _wait(resumed, 300)
    assert resumed.returncode == 0, err[-3000:]
    # Hydra rewrote the folder's config record at the resume; the first start's is kept
    first, latest = (run / ".hydra" / "start-1" / "overrides.yaml").read_text(), (run / ".hydra" / "overrides.yaml").read_text()
    assert "seed=3" in first and "ckpt_path" not in first
    assert "ckpt_path=last" in latest
    # the uninterrupted run, the reference, needs no signal and no second process: it trains here
    # (an interpreter start-up less), with the same overrides, data and one compute thread
    from litlab.training import train

    train(make_cfg(ARGS, tmp_path / "straight", run.parent / "data", fast=False))
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert a["status"] == "completed" and a["epochs"] == b["epochs"] == EPOCHS
    for key in ("val/acc", "test/acc", "test/loss"):
        assert abs(a[key] - b[key]) <= 1e-6, (key, a[key], b[key])
    # the TensorBoard curves continue in the same folder
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    steps = sorted({e.step for e in acc.Scalars("val/acc")})
    assert len(steps) == EPOCHS
    # each step once: the unfinished epoch's points from before the stop are dropped from the files
    straight_acc = EventAccumulator(str(tmp_path / "straight" / "tensorboard"))
    straight_acc.Reload()
    resumed_steps = [e.step for e in acc.Scalars("train/loss_step")]
    assert resumed_steps == [e.step for e in straight_acc.Scalars("train/loss_step")]


def test_the_first_signal_only_raises_lightnings_flag_and_a_second_stops_at_once(tmp_path):
    from types import SimpleNamespace

    from litlab.callbacks.interruption import Interruption

    callback = Interruption(str(tmp_path))
    trainer = SimpleNamespace(world_size=1, _signal_connector=SimpleNamespace(received_sigterm=False))
    callback._trainer = trainer
    callback._on_signal(signal.SIGINT, None)  # nothing raised inside the handler
    assert trainer._signal_connector.received_sigterm  # Lightning stops at the end of the batch
    with pytest.raises(KeyboardInterrupt, match="SIGTERM, a second time"):
        callback._on_signal(signal.SIGTERM, None)


def test_with_several_processes_lightnings_per_step_sigterm_broadcast_is_skipped(tmp_path):
    from types import SimpleNamespace

    from litlab.callbacks.interruption import Interruption

    calls = []

    class EpochLoop:
        def _broadcast_sigterm_tensor(self):
            calls.append(1)

    loops = {n: EpochLoop() for n in (1, 2)}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for world_size, loop in loops.items():
            trainer = SimpleNamespace(world_size=world_size, fit_loop=SimpleNamespace(epoch_loop=loop))
            Interruption(str(tmp_path)).on_train_start(trainer, None)
            loop._broadcast_sigterm_tensor()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert calls == [1]  # one process: Lightning's own (it is not called there anyway); two: skipped


@pytest.mark.parametrize("stop", ["sigterm", "error"])
def test_a_stop_after_training_keeps_the_training_and_test_results(cfg_factory, tmp_path, monkeypatch, stop):
    """SIGTERM during compression or export (outside Lightning's loops) used to kill the process
    with metrics.json still 'running'; a failure there used to leave only the error. Both now
    keep the run's training and test results in metrics.json, with the status of what happened."""
    import litlab.training as train_module
    from litlab.entry import run_entrypoint

    def compression(*args, **kwargs):
        if stop == "error":
            raise RuntimeError("export failed")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the work after training")

    monkeypatch.setattr(train_module, "after_training", compression)
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=1", "callbacks=none"])
    if stop == "sigterm":
        with pytest.raises(SystemExit) as exit_info:
            run_entrypoint(train_module.train, cfg)
        assert exit_info.value.code == 128 + signal.SIGTERM
    else:
        with pytest.raises(RuntimeError, match="export failed"):
            run_entrypoint(train_module.train, cfg)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the stop
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == ("interrupted" if stop == "sigterm" else "failed")
    assert ("SIGTERM" if stop == "sigterm" else "export failed") in m["error"]
    assert 0.3 < m["test/acc"] <= 1 and m["epochs"] == 1


def test_every_training_run_keeps_interruption_and_epoch_seeds(cfg_factory):
    """callbacks=none used to drop them: SIGTERM then killed the run with metrics.json 'running'."""
    from litlab.build import build_callbacks
    from litlab.callbacks.interruption import EpochSeed, Interruption

    for choice in ("none", "default", "early_stopping"):
        kinds = [type(c) for c in build_callbacks(cfg_factory([f"callbacks={choice}"]))]
        assert kinds.count(Interruption) == 1 and kinds.count(EpochSeed) == 1, choice


def test_ctrl_c_while_the_training_code_is_imported_is_recorded(tmp_path):
    """The entrypoints import torch and Lightning after Hydra has made the run folder (seconds):
    Ctrl-C there must be recorded like anywhere else in the run, not leave a folder without a
    record and a traceback. The interrupt is raised where that import happens.

    The three entrypoints run one after another in one process, each in its own folder: two
    interpreter start-ups (and imports of Lightning) less than a process each."""
    entrypoints = [("litlab.train", "litlab.training", []),
                   ("litlab.eval", "litlab.evaluation", ["ckpt_path=best.ckpt"]),
                   ("litlab.predict", "litlab.prediction.run", ["ckpt_path=best.ckpt", "input=x.png"])]
    probe = ("import builtins, os, runpy, sys\n"
             "real = builtins.__import__\n"
             f"for module, work_module, args in {entrypoints!r}:\n"
             "    def interrupted(name, *a, work_module=work_module, **k):\n"
             "        if name == work_module:\n"
             "            raise KeyboardInterrupt\n"
             "        return real(name, *a, **k)\n"
             "    os.mkdir(module)\n"
             "    os.chdir(module)\n"
             "    open('best.ckpt', 'wb').close(); open('x.png', 'wb').close()\n"
             "    print(f'== {module}', file=sys.stderr, flush=True)\n"
             "    builtins.__import__ = interrupted\n"
             "    sys.argv = [module, *args, 'hydra.run.dir=run']\n"
             "    try:\n"
             "        runpy.run_module(module, run_name='__main__')\n"
             "        code = 0\n"
             "    except SystemExit as e:\n"
             "        code = e.code\n"
             "    builtins.__import__ = real\n"
             "    os.chdir('..')\n"
             "    print('exit', module, code, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for module, _, _ in entrypoints:
        assert f"exit {module} {128 + signal.SIGINT}\n" in proc.stdout, (module, proc.stdout, proc.stderr[-2000:])
        m = json.loads((tmp_path / module / "run" / "metrics.json").read_text())
        assert m["status"] == "interrupted" and "SIGINT" in m["error"], (module, m)


def test_sigterm_while_the_data_is_prepared_is_recorded(cfg_factory, tmp_path, monkeypatch):
    """Before fit, no Lightning loop handles SIGTERM: it used to kill the run with no record."""
    import litlab.training as train_module
    from litlab.entry import run_entrypoint

    def slow_data(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the data preparation")

    monkeypatch.setattr(train_module, "build_data", slow_data)
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train_module.train, cfg_factory(["model=mlp"]))
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "interrupted" and "SIGTERM" in m["error"]


def test_a_stop_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    """It advised ckpt_path=last, which then failed ("last.ckpt does not exist"), and a new start in
    the folder was refused with the same advice."""
    from types import SimpleNamespace

    from litlab.callbacks.interruption import Interruption
    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    # 3 of the first epoch's 10 batches run
    batches = SimpleNamespace(current=SimpleNamespace(ready=3, completed=3), is_last_batch=False)
    fit_loop = SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(started=1, completed=0)),
                               epoch_loop=SimpleNamespace(batch_progress=batches))
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, global_step=3, checkpoint_callback=None,
                              fit_loop=fit_loop, num_training_batches=10)
    Interruption(str(run)).on_exception(trainer, None, KeyboardInterrupt())
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["last_ckpt"] is None
    assert (m["epochs"], m.get("cut_epoch_batches"), m["global_step"]) == (0, 3, 3)
    # and what it advises is what a new start is told (it advised hydra.run.dir=<this folder>, refused)
    assert m["resume"] == f"no checkpoint yet, nothing to resume; start over in a new folder (or delete {run} first)"
    with pytest.raises(LitlabError, match=r"already holds a run\. It stopped before its first checkpoint, so it "
                                          r"cannot be resumed: choose a new folder, or delete .*run to start over"):
        check_overrides([f"hydra.run.dir={run}"])


def test_a_run_from_another_runs_checkpoint_stopped_before_its_own_resumes_from_that_one(cfg_factory, tmp_path):
    """train ckpt_path=<S0's last.ckpt> hydra.run.dir=S1, stopped before S1's first checkpoint, said
    "no checkpoint yet, nothing to resume; start over in a new folder": the same command into S1 was
    then refused ("already holds a run"), and ckpt_path=last found no last.ckpt in S1."""
    import shlex

    from litlab.config_check import check_overrides
    from litlab.entry import run_entrypoint
    from litlab.errors import LitlabError
    from litlab.training import train

    short = ["model=mlp", "test=false", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=3"]
    train(cfg_factory([*short, "trainer.max_epochs=1"], name="s0"))
    start = tmp_path / "s0" / "checkpoints" / "last.ckpt"
    s1 = tmp_path / "s1"
    (s1 / ".hydra").mkdir(parents=True)  # the record Hydra writes: the resume command repeats its overrides
    (s1 / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*short, f"ckpt_path={start}"]))
    # stopped in the validation that ends S1's first epoch, before its checkpoint is written
    stop = ["+callbacks.signal._target_=tests.helpers.SignalAtBatch", "+callbacks.signal.stage=val",
            "+callbacks.signal.batch=0", f"+callbacks.signal.signum={int(signal.SIGTERM)}"]
    with pytest.raises(SystemExit):
        run_entrypoint(train, cfg_factory([*short, f"ckpt_path={start}", *stop], name="s1"))
    assert not any((s1 / "checkpoints").glob("*.ckpt"))
    m = json.loads((s1 / "metrics.json").read_text())
    words = shlex.split(m["resume"])
    assert words == ["python", "-m", "litlab.train", *short, f"ckpt_path={start}", f"hydra.run.dir={s1}"]
    assert m["status"] == "interrupted" and m["started_from"] == str(start) and m["last_ckpt"] is None
    # the advised command is taken; so is the same checkpoint named relatively
    assert check_overrides(words[3:]) is not None
    relative = os.path.relpath(start)
    assert check_overrides([*short, f"ckpt_path={relative}", f"hydra.run.dir={s1}"]) is not None
    # a plain start, or a third run's checkpoint, would write over it: refused, naming the way on
    with pytest.raises(LitlabError, match=rf"already holds a run\. It was interrupted before its first checkpoint; "
                                          rf"resume it from the checkpoint it started from with ckpt_path={start}"):
        check_overrides([*short, f"hydra.run.dir={s1}"])
    (tmp_path / "s2" / "checkpoints").mkdir(parents=True)
    (tmp_path / "s2" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(LitlabError, match=rf"is a checkpoint of another run.*this folder's own run with "
                                          rf"ckpt_path={start}, the checkpoint it started from"):
        check_overrides([*short, f"ckpt_path={tmp_path / 's2' / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={s1}"])
    # and it resumes: S1 trains its second epoch from S0's first
    done = train(cfg_factory([*short, f"ckpt_path={start}"], name="s1"))
    m = json.loads((s1 / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs"] == 2, (done, m)
    # with a checkpoint of its own, S0's is another run's again: the run resumes with ckpt_path=last
    with pytest.raises(LitlabError, match=r"is a checkpoint of another run.*own run with ckpt_path=last"):
        check_overrides([*short, f"ckpt_path={start}", f"hydra.run.dir={s1}"])


class SignalAfterTrainBatch:
    """A callback (``+callbacks.signal._target_=...``) that sends this process SIGTERM at the end of
    training batch ``batch`` of the first epoch."""

    def __new__(cls, batch: int = 3):
        import lightning.pytorch as L

        class _Signal(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, b, batch_idx):
                if trainer.current_epoch == 0 and batch_idx == batch:
                    os.kill(os.getpid(), signal.SIGTERM)

        return _Signal()


@pytest.mark.parametrize("cut", ["max_steps", "signal"])
def test_an_epoch_cut_short_is_not_counted_as_finished(cfg_factory, tmp_path, cut):
    """A run cut after 4 of its first epoch's 6 batches by trainer.max_steps recorded epochs: 1 (Lightning
    counts that epoch as completed), the same cut by SIGTERM epochs: 0. Both record the finished
    epochs and the batches of the cut one; the run resumed to its end has no cut epoch."""
    from litlab.entry import run_entrypoint
    from litlab.training import train

    run = ["model=mlp", "test=false", "+trainer.limit_train_batches=6", "+trainer.limit_val_batches=1"]
    stop = (["+trainer.max_steps=4"] if cut == "max_steps" else
            ["+callbacks.signal._target_=tests.test_interruption.SignalAfterTrainBatch"])
    if cut == "max_steps":
        train(cfg_factory([*run, *stop]))
    else:
        with pytest.raises(SystemExit):
            run_entrypoint(train, cfg_factory([*run, *stop]))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (m["epochs"], m.get("cut_epoch_batches"), m["global_step"]) == (0, 4, 4), m
    if cut == "max_steps":  # resumed within the epoch, to the end of the second
        train(cfg_factory([*run, "ckpt_path=last"]))
        m = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert (m["status"], m["epochs"], m["global_step"]) == ("completed", 2, 12) and "cut_epoch_batches" not in m


def test_a_lost_rank_says_what_last_ckpt_holds(tmp_path):
    """It said "last.ckpt holds the last finished epoch": since validations within an epoch write
    it too, a resume from it may continue the middle of an epoch."""
    from litlab.distributed.rank_faults import resume_hint

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    hint = resume_hint(tmp_path, "train")
    assert "finished epoch" not in hint
    assert hint.startswith("checkpoints/last.ckpt holds the run's last epoch end or validation that a resume "
                           "continues exactly; resume with: python -m litlab.train")


@pytest.mark.parametrize("name", ["plain-run_1", "dir with spaces/ü rün=1,x", "it's [here]"])
def test_the_resume_command_reads_back_the_run_folder(tmp_path, name):
    """A folder with spaces, '=' or commas came out unquoted: pasting the command failed to parse."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from litlab.run_commands import run_dir_override

    run = tmp_path / name
    (word,) = shlex.split(run_dir_override(run))
    parsed = OverridesParser.create().parse_override(word)
    assert parsed.key_or_group == "hydra.run.dir" and parsed.value() == str(run)


def test_the_resume_command_carries_the_runs_own_overrides(tmp_path):
    """metrics.json's resume said "<same overrides>": a shell redirect when pasted, and a resume
    without the overrides is refused (the default model is another net)."""
    import shlex

    from litlab.run_commands import resume_command

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "- model=mlp\n- data.shape=[1,8,8]\n- hydra.run.dir=elsewhere\n- ckpt_path=last\n")
    words = shlex.split(resume_command(run))
    assert words == ["python", "-m", "litlab.train", "model=mlp", "data.shape=[1,8,8]", "ckpt_path=last",
                     f"hydra.run.dir={run}"]
    # a sweep job's record: its search and launcher settings would start a new sweep, not resume it
    (run / ".hydra" / "overrides.yaml").write_text(
        "- hparams_search=digits_optuna\n- hydra.sweeper.n_trials=4\n- hydra/launcher=submitit_local\n"
        "- model.optimizer.lr=0.002\n")
    assert shlex.split(resume_command(run))[3:] == ["model.optimizer.lr=0.002", "ckpt_path=last", f"hydra.run.dir={run}"]
    (run / ".hydra" / "overrides.yaml").unlink()  # no record: says what to add
    assert "<the run's overrides>" in resume_command(run)


@pytest.mark.parametrize("stage,sig", [("test", signal.SIGINT), ("val", signal.SIGTERM)])
def test_a_signal_during_an_evaluation_stops_the_run(cfg_factory, tmp_path, stage, sig):
    """Lightning checks the stop flag after training batches only: Ctrl-C or SIGTERM during the
    test was acknowledged, then the whole test ran and the run exited 0 as "completed"."""
    from litlab.entry import run_entrypoint
    from litlab.training import train

    cfg = cfg_factory(["model=mlp", "data.batch_size=8", "+callbacks.signal._target_=tests.helpers.SignalAtBatch",
                       f"+callbacks.signal.stage={stage}", f"+callbacks.signal.signum={int(sig)}"])
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train, cfg)
    assert exit_info.value.code == 128 + sig
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "interrupted" and sig.name in m["error"]
    assert "test/acc" not in m


def test_a_signal_during_eval_stops_it_and_records_no_result(cfg_factory, tmp_path, monkeypatch):
    """litlab.eval ran to the end, recorded "completed" and then exited 130 without a word."""
    from litlab import evaluation
    from litlab.entry import run_entrypoint
    from litlab.training import train
    from tests.helpers import SignalAtBatch

    train(cfg_factory(["model=mlp", "trainer.max_epochs=1"], name="trained"))
    build_trainer = evaluation.build_trainer
    monkeypatch.setattr(evaluation, "build_trainer",
                        lambda cfg, callbacks, loggers: build_trainer(cfg, [*callbacks, SignalAtBatch()], loggers))
    cfg = cfg_factory([f"ckpt_path={tmp_path / 'trained' / 'checkpoints' / 'best.ckpt'}"], name="ev",
                      config_name="eval", fast=False)
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(lambda c: evaluation.evaluate(c, ["data.batch_size=8"]), cfg)
    assert exit_info.value.code == 128 + signal.SIGINT
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["status"] == "interrupted" and m["task"] == "eval" and "test/acc" not in m


def test_a_signal_between_fit_and_test_stops_the_test(cfg_factory, tmp_path):
    """A signal after the last training batch was acknowledged ("stopping at the end of this
    batch"), then forgotten when the test started (Lightning resets its flag there): the whole test
    ran and the run exited 0 as "completed"."""
    from litlab.entry import run_entrypoint
    from litlab.training import train

    cfg = cfg_factory(["model=mlp", "+callbacks.signal._target_=tests.helpers.SignalAtFitEnd"])
    with pytest.raises(SystemExit) as exit_info:
        run_entrypoint(train, cfg)
    assert exit_info.value.code == 128 + signal.SIGTERM
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "interrupted" and "test/acc" not in m and "ckpt_path=last" in m["resume"]


class SignalsItsWorker(torch.utils.data.Dataset):
    """20 samples; the loader worker that reads the first sends itself SIGINT, as a Ctrl-C reaches
    every process of the terminal's group, and reads on."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> int:
        if i == 0:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs at the next bytecode
        return i


def test_a_loader_worker_forked_with_the_handler_serves_on_without_a_word(tmp_path):
    """Workers are forked with the process's handler: each wrote "SIGINT received" into train.log
    (5 copies for one Ctrl-C with data.num_workers=2 and data.in_memory=false). A worker notes the
    signal silently and serves on (one that exited, as torch's do on Ctrl-C, failed its process's
    next batch: "DataLoader worker exited unexpectedly"); the process itself still logs it."""
    import logging
    from types import SimpleNamespace

    from litlab.callbacks import interruption

    train_log = logging.FileHandler(tmp_path / "train.log")  # as Hydra's, which forked workers inherit
    interruption.log.addHandler(train_log)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    trainer = SimpleNamespace(world_size=1, _signal_connector=SimpleNamespace(received_sigterm=False))
    try:
        interruption.Interruption(str(tmp_path))._take_over_signals(trainer)
        loader = torch.utils.data.DataLoader(SignalsItsWorker(), batch_size=5, num_workers=1,
                                             multiprocessing_context="fork")
        assert [b.tolist() for b in loader] == [list(range(i, i + 5)) for i in range(0, 20, 5)]
        train_log.flush()
        assert (tmp_path / "train.log").read_text() == "" and not trainer._signal_connector.received_sigterm
        os.kill(os.getpid(), signal.SIGINT)  # the process's own signal: logged once, the run stops
        time.sleep(0.05)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        interruption.log.removeHandler(train_log)
        train_log.close()
    assert trainer._signal_connector.received_sigterm
    assert (tmp_path / "train.log").read_text().count("SIGINT received: stopping at the end of this batch") == 1
