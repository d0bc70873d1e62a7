"""The real entrypoints in subprocesses: output layout, summary, and one-paragraph errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import refused_before_torch, run_cli

TINY = ["trainer.max_epochs=1", "model=mlp", "trainer.num_sanity_val_steps=0"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real `python -m litlab.train` run, shared by the tests that read its outputs."""
    root = tmp_path_factory.mktemp("cli")
    proc = run_cli("litlab.train", *TINY, f"paths.root_dir={root}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], proc


def test_run_directory_layout(finished_run):
    run, _ = finished_run
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "metrics.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed" and 0 <= m["test/acc"] <= 1
    # microsecond timestamp: YYYY-MM-DD_HH-MM-SS-ffffff
    assert len(run.name.split("-")[-1]) == 6


def test_summary_names_metrics_outputs_and_tensorboard(finished_run):
    run, proc = finished_run
    assert f"litlab run completed: {run}" in proc.stdout
    assert "test/acc" in proc.stdout
    assert f"tensorboard --logdir {run / 'tensorboard'}" in proc.stdout


def test_lightning_lines_stay_and_its_product_tips_go(finished_run):
    _, proc = finished_run
    printed = proc.stdout + proc.stderr
    assert "GPU available: False" in printed  # Lightning's own facts about the run stay on the console
    assert "Tip:" not in printed and "litlogger" not in printed


def test_eval_reproduces_the_test_metric(finished_run, cfg_factory, tmp_path):
    """In process, a process start-up less: the command's own evaluation is the next test's (split=val)."""
    from litlab.evaluation import evaluate

    run, _ = finished_run
    m = json.loads((run / "metrics.json").read_text())
    evaluate(cfg_factory([f"ckpt_path={m['best_ckpt']}"], name="ev", config_name="eval", fast=False))
    e = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert abs(e["test/acc"] - m["test/acc"]) < 1e-4


def test_eval_cli_applies_data_overrides_to_the_stored_run(finished_run, cfg_factory, tmp_path, monkeypatch):
    from litlab.errors import LitlabError
    from litlab.eval import hydra_argv
    from litlab.evaluation import evaluate

    run, _ = finished_run
    m = json.loads((run / "metrics.json").read_text())
    proc = run_cli("litlab.eval", f"ckpt_path={m['best_ckpt']}", "split=val", "data.batch_size=7",
                   f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    e = json.loads((next((tmp_path / "outputs" / "runs").iterdir()) / "metrics.json").read_text())
    assert abs(e["val/acc"] - m["val/acc"]) < 1e-4  # best.ckpt is the epoch of the best val/acc
    # in process from here, with the command line as the command hands it to Hydra and evaluate()
    # (a failed eval's exit status 2 and one paragraph: test_eval_cli_names_a_key_the_stored_run_does_not_have)
    def evaluate_with(*args: str, name: str) -> None:
        given = hydra_argv([f"ckpt_path={m['best_ckpt']}", *args])
        evaluate(cfg_factory(given, name=name, config_name="eval", fast=False), given)

    # the override reaches the data module: a bad value is its error
    with pytest.raises(LitlabError) as bad:
        evaluate_with("data.batch_size=0", name="bad")
    assert "data.batch_size must be a positive integer, got 0" in str(bad.value)
    # the trainer is checked before any data is prepared: its error comes first
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the command ran with CUDA_VISIBLE_DEVICES=""
    with pytest.raises(LitlabError) as gpu:
        evaluate_with("trainer=gpu", "data.batch_size=0", name="gpu")
    assert "trainer.accelerator" in str(gpu.value) and "data.batch_size" not in str(gpu.value)


def test_eval_cli_names_a_key_the_stored_run_does_not_have(finished_run, tmp_path):
    run, _ = finished_run
    m = json.loads((run / "metrics.json").read_text())
    proc = run_cli("litlab.eval", f"ckpt_path={m['best_ckpt']}", "data.batchsize=3", f"paths.root_dir={tmp_path}",
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = "data.batchsize is not a key of the run stored in"
    assert message in proc.stderr and "Traceback" not in proc.stderr
    # the digits module has no batchsize argument: no "add the key with +data.batchsize=" hint, which
    # failed later with a TypeError; told from the checkpoint's record read without torch, so no folder is made
    assert "add the key with +data.batchsize" not in proc.stderr and "Did you mean data.batch_size?" in proc.stderr
    # printed once, on stderr
    assert message not in proc.stdout
    assert sum(line.startswith("Error:") for line in proc.stderr.splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


# the whole command for one mistake of each kind: a choice (before Hydra), a missing file, and a
# value found inside the run (data=npz with a file that is no archive: test_a_failed_run_writes_only_its_own_directory);
# the messages of the others are checked in process below
@pytest.mark.parametrize("args,message", [
    (["model=transformer"], "model=transformer is not a choice: conf/model/ has cnn, gru, lstm, mlp"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path=/no/such.ckpt does not exist"),
])
def test_bad_input_is_one_paragraph_and_nonzero(tmp_path, args, message):
    proc = run_cli("litlab.train", *TINY, *args, f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1


@pytest.mark.parametrize("args,message", [
    (["data.batch_size=abc"], "data.batch_size must be a positive integer, got 'abc'"),
    (["trainer.max_epochs=many"], "trainer.max_epochs must be an integer"),
    (["data=imagefolder"], "data.root is not set"),
    (["data=imagefolder", "data.root=/no/such/dir"], "data.root=/no/such/dir is not a folder"),
    (["data=npz"], "data.path is not set"),
    (["model.label_smoothing=2"], "model.label_smoothing must be a number in [0, 1)"),
    (["model.optimizer.lr=-1"], "model.optimizer.lr must be a number >= 0, got -1"),
    (["trainer.max_epochs=-1"], "model.scheduler.T_max=-1: the cosine schedule needs a number of epochs"),
    # an override without its value, a stray word: Hydra's parser said "missing EQUAL at '<EOF>'" (exit 1)
    (["data.batch_size", "128"], "data.batch_size has no value: an override is key=value (e.g. data.batch_size=VALUE"),
    (["--cfg", "job", "how?"], "'how?' is not an override: each argument is key=value"),
    # batch normalization of one value per channel failed in the first step with two tracebacks
    # (a CNN on (1, F) features keeps one position; on 8x8 digits, batch size 1 trains)
    (["model=cnn", "data=synthetic_seq", "data.shape=[1,4]", "data.batch_size=1"],
     "data.batch_size=1: this net's batch normalization gets one value per channel from a single sample"),
    # a dict for an existing node merges into it: the error said model.net "is not a key", and its +fix merged too
    (["model.net={_target_: litlab.models.mlp.MLP, hiddenx: 3}"],
     "merges into the model.net that is already in the config, which has no key model.net.hiddenx"),
])
def test_bad_values_are_named_in_one_paragraph(cfg_factory, args, message):
    """What the command prints for each (the checks before Hydra, then the run's own)."""
    from litlab.config_check import check_choices, check_overrides
    from litlab.errors import LitlabError
    from litlab.training import train

    with pytest.raises(LitlabError) as info:
        check_choices([*TINY, *args])
        check_overrides([*TINY, *args])
        train(cfg_factory([*TINY, *args]))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_trainer_the_machine_cannot_run_fails_before_the_data_is_prepared(tmp_path):
    data_dir = tmp_path / "fresh-data"
    proc = run_cli("litlab.train", *TINY, "trainer.precision=16-mixed", "trainer.accelerator=cpu",
                   f"paths.data_dir={data_dir}", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr
    assert not data_dir.exists()  # the digits PNGs were not written


def test_a_failed_run_writes_only_its_own_directory(tmp_path, finished_run):
    run, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    (tmp_path / "not.npz").write_text("text")  # there, so only the run that reads it finds it is no archive
    proc = run_cli("litlab.train", *TINY, "data=npz", f"data.path={tmp_path / 'not.npz'}",
                   f"paths.root_dir={run.parents[2]}", cwd=run.parents[2])
    assert proc.returncode == 2
    # a value found inside the run: one paragraph (test_bad_input_is_one_paragraph_and_nonzero's other kinds)
    assert "is not a readable .npz file" in proc.stderr and "Traceback" not in proc.stderr
    assert sum(line.startswith("Error:") for line in proc.stderr.splitlines()) == 1
    assert before == {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    failed = [d for d in run.parent.iterdir() if d != run]
    assert len(failed) == 1
    m = json.loads((failed[0] / "metrics.json").read_text())
    assert m["status"] == "failed" and "data.path" in m["error"]


def test_an_existing_run_directory_is_not_written_over(finished_run):
    run, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    proc = run_cli("litlab.train", *TINY, f"hydra.run.dir={run}", f"paths.root_dir={run.parents[2]}")
    assert proc.returncode == 2
    assert "already holds a run. Resume it with ckpt_path=last" in proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


def test_a_refused_resume_leaves_the_finished_run_as_it_was(finished_run):
    """A resume whose checkpoint does not fit the command's model fails before it begins: the run's
    metrics.json and config record stay the earlier start's (they used to read failed and describe
    the refused command); only its log tells of the attempt."""
    run, _ = finished_run
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    log_before = (run / "train.log").read_text()
    proc = run_cli("litlab.train", *TINY, "model=cnn", "ckpt_path=last", f"hydra.run.dir={run}",
                   f"paths.root_dir={run.parents[2]}")
    assert proc.returncode == 2 and "belongs to a different model" in proc.stderr, proc.stderr[-2000:]
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    assert (run / "train.log").read_text().startswith(log_before)


@pytest.mark.parametrize("args,message", [
    (["trainer.foo=1"], "trainer.foo is not a key of the config"),
    (["model.optimizer.lr=[1,2"], "could not parse the override"),
    (["-m", "model=mlp,cnn", "trainer.nope=1,2"], "trainer.nope is not a key of the config"),
    (["hydra.run.dir=/etc/passwd/run"], "/etc/passwd is a file, not a folder"),
    (["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=abc"],
     "hydra.launcher.timeout_min=abc: Value 'abc' of type 'str' could not be converted to Integer"),
])
def test_bad_overrides_fail_before_any_work(tmp_path, args, message):
    proc = run_cli("litlab.train", *args, f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("module,args", [
    ("litlab.train", ["trainer.max_epoch=3"]),
    ("litlab.eval", ["ckpt_path=run.ckpt", "split=test", "trainer.nope=1"]),
    ("litlab.predict", ["ckpt_path=run.ckpt", "input=x.png", "batchsize=8"]),
])
def test_a_command_line_mistake_is_reported_before_torch_is_imported(tmp_path, module, args):
    """Each entrypoint checks its command line before it imports torch or Lightning (seconds of
    imports), so a misspelt key is reported at once, with the command that lists the real keys."""
    stderr = refused_before_torch(module, args, tmp_path)
    key = args[-1].split("=")[0]
    assert f"Error: {key} is not a key of the config" in stderr
    shown = " ".join(args[:-1])  # the command line's other overrides, and the node where there is one
    package = f" --package {key.rsplit('.', 1)[0]}" if "." in key else ""
    assert f"`python -m {module} {shown + ' ' if shown else ''}--cfg job{package}`" in stderr


@pytest.mark.parametrize("module,groups,not_groups", [
    ("litlab.train", ["data", "model", "trainer", "compress", "export", "hparams_search"], []),
    ("litlab.eval", ["trainer", "logger", "paths"], ["model", "data", "compress"]),
    ("litlab.predict", ["paths"], ["model", "trainer"]),
])
def test_help_lists_the_groups_each_command_takes(tmp_path, module, groups, not_groups):
    """Hydra's help listed every conf/ folder for every command, base files (_base) among the choices."""
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {line.split()[0] for line in proc.stdout.split("Config groups")[1].split("Keys")[0].splitlines()[1:]
              if line.strip()}
    assert set(groups) <= listed and not listed & set(not_groups)
    assert "_base" not in proc.stdout and "_classifier" not in proc.stdout and "_finetune" not in proc.stdout
    assert f"python -m {module} --cfg job" in proc.stdout


def test_help_shows_the_overrides_applied(tmp_path):
    proc = run_cli("litlab.train", "-m", "model=mlp,cnn", "data.batch_size=7", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "  model           [mlp] cnn, gru" in proc.stdout  # a sweep's first job
    assert "batch_size: 7" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_help_in_a_sweep_with_a_malformed_override_is_one_paragraph(tmp_path):
    proc = run_cli("litlab.train", "--help", "-m", "model.x=[1,2", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Error: could not parse the override(s) model.x=[1,2" in proc.stderr


@pytest.mark.parametrize("config_name", ["eval", "predict"])
def test_eval_and_predict_do_not_write_into_a_finished_run(tmp_path, config_name):
    """They rewrote a training run's metrics.json and config record when hydra.run.dir named it."""
    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "completed", "task": "train"}')
    args = [f"hydra.run.dir={run}", "ckpt_path=best.ckpt"] + (["input=x.npz"] if config_name == "predict" else [])
    with pytest.raises(LitlabError, match=r"hydra\.run\.dir=.*run already holds a run\. Choose a new folder"):
        check_overrides(args, config_name)
    assert check_overrides([f"hydra.run.dir={tmp_path / 'new'}", *args[1:]], config_name) is not None


def test_a_checkpoint_of_another_run_does_not_resume_into_a_finished_run(tmp_path):
    """train ckpt_path=<run A's checkpoint> hydra.run.dir=<finished run C> was taken as resuming C:
    it wrote over C's last.ckpt, purged C's TensorBoard curves and tested with C's best.ckpt."""
    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    other, run = tmp_path / "a", tmp_path / "c"
    for folder in (other, run):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (folder / "metrics.json").write_text('{"status": "completed", "task": "train"}')
    with pytest.raises(LitlabError, match=r"already holds a run\. ckpt_path=.*a/checkpoints/last\.ckpt is a "
                                          r"checkpoint of another run"):
        check_overrides([f"hydra.run.dir={run}", f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}"], "train")
    # its own checkpoint, by path or as `last`, and another run's into a new folder are resumes
    for ckpt, folder in ((run / "checkpoints" / "last.ckpt", run), ("last", run),
                         (other / "checkpoints" / "last.ckpt", tmp_path / "new")):
        assert check_overrides([f"hydra.run.dir={folder}", f"ckpt_path={ckpt}"], "train") is not None


def test_a_run_interrupted_before_its_own_checkpoint_takes_the_one_it_started_from_again(tmp_path):
    """A run started from another run's checkpoint and interrupted before its own first one was told to
    start over in a new folder: the same command into its folder was refused as "a checkpoint of another
    run", and ckpt_path=last found no last.ckpt there. Only that checkpoint, and only while the folder
    holds no checkpoint of its own and the run was interrupted, is taken."""
    import json

    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    other, run = tmp_path / "a", tmp_path / "b"
    (other / "checkpoints").mkdir(parents=True)
    start = other / "checkpoints" / "last.ckpt"
    start.write_bytes(b"x")
    run.mkdir()
    record = {"status": "interrupted", "task": "train", "started_from": str(start)}
    (run / "metrics.json").write_text(json.dumps(record))
    assert check_overrides([f"hydra.run.dir={run}", f"ckpt_path={start}"], "train") is not None
    with pytest.raises(LitlabError, match=rf"already holds a run\. It was interrupted before its first checkpoint; "
                                          rf"resume it from the checkpoint it started from with ckpt_path={start}"):
        check_overrides([f"hydra.run.dir={run}"], "train")
    # ckpt_path=last failed once the run began: "last.ckpt does not exist"
    with pytest.raises(LitlabError, match=rf"ckpt_path=last: .*b holds no checkpoint: its run started from "
                                          rf"ckpt_path={start} and was interrupted .* Resume it from there with "
                                          rf"ckpt_path={start}"):
        check_overrides([f"hydra.run.dir={run}", "ckpt_path=last"], "train")
    # a start that failed before its own first checkpoint is taken the same way (and says so)
    (run / "metrics.json").write_text(json.dumps({**record, "status": "failed"}))
    assert check_overrides([f"hydra.run.dir={run}", f"ckpt_path={start}"], "train") is not None
    # a finished run, or one with a checkpoint of its own, is not written over
    for status, own in (("completed", False), ("interrupted", True)):
        (run / "metrics.json").write_text(json.dumps({**record, "status": status}))
        if own:
            (run / "checkpoints").mkdir()
            (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
        with pytest.raises(LitlabError, match=r"already holds a run\. ckpt_path=.*a/checkpoints/last\.ckpt is a "
                                              r"checkpoint of another run"):
            check_overrides([f"hydra.run.dir={run}", f"ckpt_path={start}"], "train")


def test_a_failed_predict_leaves_its_folder_to_the_next_try(tmp_path):
    """A predict that failed before any work (a wrong path) kept its hydra.run.dir: the corrected
    command was refused with "already holds a run"."""
    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    run = tmp_path / "run"
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    (tmp_path / "x.npz").write_text("not read")
    proc = run_cli("litlab.predict", f"ckpt_path={tmp_path / 'bad.ckpt'}", f"input={tmp_path / 'x.npz'}",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 2 and "bad.ckpt could not be read as a checkpoint" in proc.stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and record["task"] == "predict"
    args = [f"hydra.run.dir={run}", "ckpt_path=best.ckpt", "input=x.npz"]
    assert check_overrides(args, "predict") is not None
    # a failed run of another command is not taken over
    with pytest.raises(LitlabError, match=r"already holds a run"):
        check_overrides(args[:2], "eval")
    (run / "metrics.json").write_text('{"status": "failed", "task": "train"}')
    with pytest.raises(LitlabError, match=r"already holds a run"):
        check_overrides(args, "predict")


@pytest.mark.parametrize("where", ["data_dir", "checkpoints"])
def test_a_file_where_a_folder_goes_is_refused_before_any_work(tmp_path, where):
    """paths.data_dir as a file ended in two tracebacks (FileExistsError); a file named checkpoints
    in the run folder failed after the first epoch, advising to free disk space."""
    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    run = tmp_path / "run"
    run.mkdir()
    if where == "data_dir":
        (tmp_path / "afile").write_text("x")
        args, match = [f"paths.data_dir={tmp_path / 'afile'}"], r"paths\.data_dir=.*afile is a file, not a folder"
    else:
        (run / "checkpoints").write_text("x")
        args, match = [], r"hydra\.run\.dir=.*run holds a file named checkpoints where the run writes its checkpoints/"
    with pytest.raises(LitlabError, match=match):
        check_overrides([f"hydra.run.dir={run}", *args])


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    """`--help | head` ended in a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "litlab.eval", "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_a_run_folder_in_use_by_another_command_is_refused(tmp_path):
    """Two runs started at once into one hydra.run.dir both passed the check for an earlier run and
    wrote over each other (one's config record, the other's metrics and checkpoints)."""
    import subprocess
    import sys

    from litlab.config_check import check_overrides
    from litlab.errors import LitlabError

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from litlab.run_lock import hold_run_dir; "
                               f"hold_run_dir(Path({str(run)!r}), 'hydra.run.dir'); print('held', flush=True); "
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LitlabError, match=r"hydra\.run\.dir=.*run is in use: another litlab command is running in "
                                              r"it now"):
            check_overrides([f"hydra.run.dir={run}"])
    finally:
        holder.kill()
        holder.wait()
    assert check_overrides([f"hydra.run.dir={run}"]) is not None  # free once that process has ended


def test_the_override_check_leaves_hydras_own_flags_to_hydra(capsys):
    """The check parsed the command line with Hydra's parser, which printed --version (and a usage
    error) once more before Hydra printed it itself."""
    from litlab.config_check import check_values_given

    for argv in (["--version"], ["--bogus", "seed=1"], ["--help"]):
        check_values_given(argv)
    assert capsys.readouterr() == ("", "")
