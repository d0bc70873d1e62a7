"""What a user of lightning-hydra-template gets wrong, refused before any work: one paragraph, exit 2,
no run folder. Before, these ran (``+extras.print_config=False``, ``optimized_metric=val/acc_best``),
failed after the run's folder was made (``trainer.precision=16``, a net without ``_partial_``), or
pointed to a ``--cfg job`` that did not show the key's node."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from litlab.config_check import check_overrides, choices
from litlab.errors import LitlabError
from tests.conftest import refused_before_torch


def refusal(args: list[str], tmp_path: Path, config_name: str = "train") -> str:
    with pytest.raises(LitlabError) as caught:
        check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"], config_name)
    return str(caught.value)


def passes(args: list[str], tmp_path: Path, config_name: str = "train") -> None:
    check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                    config_name)


# --- 1. a key added at the top, which nothing reads ------------------------------------------------

def test_the_templates_extras_are_refused_saying_where_the_config_is(tmp_path):
    message = refusal(["+extras.print_config=False"], tmp_path)
    assert message.startswith("+extras.print_config=False: litlab has no extras (lightning-hydra-template's), and "
                              "a key added at the top of the config is read by nothing.")
    assert "<run>/.hydra/config.yaml" in message and "--cfg job` prints it" in message


@pytest.mark.parametrize("args", [["+foo=1"], ["++sed=1"], ["-m", "+foo=1,2"]])
def test_a_new_top_level_key_is_refused_naming_it(tmp_path, args):
    message = refusal(args, tmp_path)
    head = args[-1].lstrip("+").split("=")[0]
    assert message.startswith(f"{args[-1].split(',')[0]} adds {head} at the top of the config, where nothing reads "
                              f"it: {head} is neither a key of the config (task_name, seed, ")
    assert ("Did you mean seed?" in message) == (head == "sed")


def test_lr_find_refuses_a_new_top_level_key_too(tmp_path):
    message = refusal(["+foo=1"], tmp_path, "lr_find")
    assert message.startswith("+foo=1 adds foo at the top of the config") and ", lr_find)" in message


@pytest.mark.parametrize("args", [["++seed=3"], ["++tags=[a]"], ["+hydra.job.env_set.X=1"],
                                  ["+trainer.detect_anomaly=true"],
                                  ["experiment=digits_mlp", "++optimized_metric=val/loss"],
                                  ["averaging=ema", "++averaging.decay=0.99"]])
def test_keys_of_the_config_groups_and_hydra_stay_allowed(tmp_path, args):
    passes(args, tmp_path)


@pytest.mark.parametrize("args", [
    ["+lr=0.01", "model.optimizer.lr=${lr}"],
    ["-m", "+lr=0.1,0.01", "model.optimizer.lr=${lr}"],
    ["+base_lr=0.01", "model.optimizer.lr=${oc.select:base_lr,0.1}"],
])
def test_a_top_level_key_an_interpolation_reads_is_allowed(tmp_path, args):
    passes(args, tmp_path)


def test_a_top_level_key_a_composed_file_reads_is_allowed(tmp_path):
    conf = tmp_path / "myconf"
    conf.mkdir()
    (conf / "my.yaml").write_text("defaults:\n  - train\n  - _self_\n\nmodel:\n  optimizer:\n    lr: ${base_lr}\n")
    passes(["--config-dir", str(conf), "--config-name", "my", "+base_lr=0.01"], tmp_path)
    assert "adds base_lrx at the top" in refusal(["--config-dir", str(conf), "--config-name", "my", "+base_lr=0.01",
                                                  "+base_lrx=1"], tmp_path)


def _own_primary(tmp_path: Path, kind: str, dropped: tuple[str, ...]) -> Path:
    """A config folder whose ``my.yaml`` is litlab's ``conf/<kind>.yaml`` without the top-level ``dropped`` keys."""
    from litlab.config_flags import CONF_DIR

    conf = tmp_path / "myconf"
    conf.mkdir()
    lines = (CONF_DIR / f"{kind}.yaml").read_text().splitlines()
    start = [i for i, line in enumerate(lines) if line.split(":")[0] in dropped]
    kept = [line for i, line in enumerate(lines)
            if not any(i == j or (i > j and lines[i].startswith(" ") and all(
                lines[k].startswith(" ") or not lines[k].strip() for k in range(j + 1, i))) for j in start)]
    (conf / "my.yaml").write_text("\n".join(kept) + "\n")
    return conf


@pytest.mark.parametrize("added", [["+tags=[a,b]"], ["+optimized_metric=val/loss"]])
def test_top_level_keys_litlab_reads_are_allowed_where_the_own_primary_lacks_them(tmp_path, added):
    conf = _own_primary(tmp_path, "train", ("tags", "optimized_metric"))
    assert "tags" not in (conf / "my.yaml").read_text() and "optimized_metric" not in (conf / "my.yaml").read_text()
    passes(["--config-dir", str(conf), "--config-name", "my", *added], tmp_path)


def test_lr_find_allows_its_node_where_the_own_primary_lacks_it(tmp_path):
    conf = _own_primary(tmp_path, "lr_find", ("lr_find",))
    assert "min_lr" not in (conf / "my.yaml").read_text()
    passes(["--config-dir", str(conf), "--config-name", "my",
            "+lr_find={min_lr: 1e-6, max_lr: 1.0, num_steps: 100, mode: exponential, smoothing: 0.05, "
            "stop_factor: 4.0}"], tmp_path, "lr_find")


@pytest.mark.parametrize("order", ["digits_mlp,wide", "wide,digits_mlp"])
def test_a_top_level_key_only_some_swept_jobs_have_is_allowed(tmp_path, order):
    conf = tmp_path / "myconf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "wide.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: mlp\n\nwidth: 64\n")
    passes(["--config-dir", str(conf), "-m", f"experiment={order}", "++width=16"], tmp_path)
    assert "adds widht at the top" in refusal(["--config-dir", str(conf), "-m", f"experiment={order}", "++widht=16",
                                               f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)


# --- 2. optimized_metric ---------------------------------------------------------------------------

def test_the_templates_best_metric_is_refused_naming_the_one_to_use(tmp_path):
    assert refusal(["optimized_metric=val/acc_best"], tmp_path) == (
        "optimized_metric=val/acc_best is not a figure litlab records: metrics.json's val/acc is already the best "
        "epoch's value (the epoch of best.ckpt, as callbacks.model_checkpoint monitors val/acc). Use "
        "optimized_metric=val/acc. Refused before any work.")


def test_a_search_on_a_metric_never_recorded_is_refused_before_its_first_trial(tmp_path):
    message = refusal(["hparams_search=digits_optuna", "optimized_metric=val/accuracy"], tmp_path)
    assert message.startswith("optimized_metric=val/accuracy is not among the figures this run records in "
                              "metrics.json: test/acc, test/acc_top5, test/ece, test/loss, train/acc, train/loss, "
                              "val/acc, val/acc_top5, val/ece, val/loss. A sweep ranks its jobs by it")


def test_the_names_depend_on_the_callbacks_and_the_test(tmp_path):
    assert "(test=false: no test/ figures)" in refusal(["test=false", "optimized_metric=test/acc"], tmp_path)
    message = refusal(["callbacks=none", "optimized_metric=val/ece"], tmp_path)
    assert message.endswith("test/acc, test/loss, train/acc, train/loss, val/acc, val/loss. A sweep ranks its jobs "
                            "by it, and would get no value from any job. Set optimized_metric to one of them. "
                            "Refused before any work.")


@pytest.mark.parametrize("args", [
    ["optimized_metric=val/acc_top5"], ["optimized_metric=test/ece"], ["optimized_metric=val/loss"],
    ["optimized_metric=compress/after/test_acc"], ["optimized_metric=fit_time_s"], ["optimized_metric=null"],
    ["optimized_metric=val/acc_best", "--cfg", "job"],  # --cfg prints the config as it is
    ["+callbacks.mine._target_=mymod.Logs", "optimized_metric=val/f1"],  # a callback of the user's own may log it
])
def test_names_the_run_may_record_are_let_through(tmp_path, args):
    passes(args, tmp_path)


def test_lr_find_does_not_check_the_metric(tmp_path):
    passes(["optimized_metric=val/acc_best"], tmp_path, "lr_find")


# --- 3 and 9. trainer values that need no torch -----------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("16", "trainer.precision=16 is Lightning's old name for 16-mixed: use trainer.precision=16-mixed (a CUDA GPU); "
           "on the CPU, trainer.precision=32 or bf16-mixed."),
    ("bf16", "trainer.precision=bf16 is Lightning's old name for bf16-mixed: use trainer.precision=bf16-mixed."),
    ("half", "trainer.precision must be one of 32, 64, 16-mixed, bf16-mixed (or 16-true, bf16-true), got 'half'."),
])
def test_a_precision_name_is_checked_before_the_run(tmp_path, value, expected):
    assert refusal([f"trainer.precision={value}"], tmp_path) == expected


def test_more_cpu_processes_than_cores_are_refused_before_the_run(tmp_path, monkeypatch):
    import litlab.trainer_values

    monkeypatch.setattr(litlab.trainer_values.os, "cpu_count", lambda: 2)
    assert refusal(["trainer=ddp_cpu", "trainer.devices=4"], tmp_path) == (
        "trainer.devices=4 but this machine has 2 CPU cores (one process each). Use trainer.devices=2 or fewer.")
    passes(["trainer=ddp_cpu", "trainer.devices=2"], tmp_path)


@pytest.mark.parametrize("override", ["trainer.max_epochs=abc", "+trainer.min_epochs=1.5", "+trainer.max_steps=x"])
def test_trainer_integers_are_checked_as_the_run_checks_them(tmp_path, override):
    from omegaconf import OmegaConf

    from litlab.trainer_checks import check_trainer_config

    key, value = override.lstrip("+").split("=")
    message = refusal([override], tmp_path)
    with pytest.raises(LitlabError) as late:  # the run's own check, in the same words
        check_trainer_config(OmegaConf.create({key.split(".")[1]: OmegaConf.create(f"v: {value}").v,
                                               "accelerator": "cpu"}))
    assert message == str(late.value) and message.startswith(f"{key} must be an integer >= ")


# --- 4 and 5. the template's switches ---------------------------------------------------------------

def test_train_false_says_how_to_only_test(tmp_path):
    assert refusal(["train=False"], tmp_path) == (
        "train=False: litlab.train has no switch train; it always trains (test=false leaves out the test after "
        "training). To only test a checkpoint, run python -m litlab.eval ckpt_path=<run>/checkpoints/best.ckpt.")


@pytest.mark.parametrize("override", ["model=mlp", "data=digits"])
def test_eval_says_the_model_and_data_come_from_the_checkpoint(tmp_path, override):
    message = refusal(["ckpt_path=run.ckpt", override], tmp_path, "eval")
    assert message.startswith(f"{override}: eval takes the model and the data from the run stored in the "
                              f"checkpoint (ckpt_path=run.ckpt), so it has no {override.split('=')[0]} choice. "
                              f"data.KEY=VALUE changes a key of the stored data")


def test_eval_shows_the_node_with_the_checkpoint_given(tmp_path):
    message = refusal(["ckpt_path=run.ckpt", "trainer.nope=1"], tmp_path, "eval")
    assert (f"Check the spelling with `python -m litlab.eval ckpt_path=run.ckpt hydra.run.dir={tmp_path / 'run'} "
            f"--cfg job --package trainer`") in message


# --- 6. a new key of the search space ---------------------------------------------------------------

@pytest.mark.parametrize("plus", ["", "+"])
def test_a_search_key_below_the_sweepers_params_says_to_sweep_it(tmp_path, plus):
    typed = f"{plus}hydra.sweeper.params.model.net.dropout=interval(0.0,0.5)"
    assert refusal(["-m", "hparams_search=digits_optuna", typed], tmp_path) == (
        f"{typed}: the keys of hydra.sweeper.params are whole dotted names (model.optimizer.lr), which an "
        f"override cannot add below it. Search a new key by sweeping it on the command line instead: "
        f"'model.net.dropout=interval(0.0,0.5)' (docs/scaling.md).")


# --- 7. a net of the user's own without _partial_ ---------------------------------------------------

def test_a_net_without_partial_is_refused_before_the_run(tmp_path):
    message = refusal(["~model.net", "+model.net={_target_:my_nets.Tiny,width:32}"], tmp_path)
    assert message == ("model.net needs _partial_: true: litlab builds the net, passing input_shape and num_classes; "
                       "model.net (my_nets.Tiny) has no _partial_, so it would be built without them. Add "
                       "_partial_: true under net: in the model's file, or give ++model.net._partial_=true.")
    passes(["~model.net", "+model.net={_target_:my_nets.Tiny,_partial_:true,width:32}"], tmp_path)


def test_a_net_given_as_a_class_reference_is_allowed(tmp_path):
    """``hydra.utils.get_class`` returns the class, which litlab then calls with input_shape and num_classes."""
    passes(["~model.net", "+model.net={_target_:hydra.utils.get_class,path:my_nets.Tiny}"], tmp_path)
    passes(["~model.net", "+model.net={_target_:hydra.utils.get_method,path:my_nets.tiny}"], tmp_path)


@pytest.mark.parametrize("model", choices("model"))
def test_every_model_choice_has_a_partial_net(tmp_path, model):
    passes([f"model={model}"], tmp_path)


# --- 8. the --cfg job of a misspelt key shows its node as composed ----------------------------------

def test_the_hint_command_shows_the_node_of_the_misspelt_key(tmp_path):
    message = refusal(["mixing=mixup", "mixing.alpah=0.3"], tmp_path)
    hint = message.split("Check the spelling with `")[1].split("`")[0]
    assert hint == f"python -m litlab.train mixing=mixup hydra.run.dir={tmp_path / 'run'} --cfg job --package mixing"
    shown = subprocess.run([sys.executable, *shlex.split(hint)[1:]], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "alpha: 0.2" in shown.stdout and "_target_: litlab" in shown.stdout


# --- each as the user runs it: exit 2 before torch, no folder ---------------------------------------

@pytest.mark.parametrize("args", [["trainer.precision=16"], ["+extras.print_config=False"],
                                  ["optimized_metric=val/acc_best"], ["trainer.max_epochs=abc"]])
def test_refused_before_torch_and_any_folder(tmp_path, args):
    stderr = refused_before_torch("litlab.train", args, tmp_path)
    assert stderr.startswith("Error: ") and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()
