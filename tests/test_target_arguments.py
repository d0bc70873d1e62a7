"""A ``+KEY``/``++KEY`` the chosen litlab class or function does not take (litlab.target_arguments):
``averaging=ema ++averaging.decya=0.9`` composed, made the run's folder, prepared the data and
failed only when ``ema()`` was called. Now refused on the command line, before torch."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from tests.conftest import refused_before_torch


def _folders(tmp_path) -> list[str]:
    return [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


@pytest.mark.parametrize("args", [
    ["averaging=ema", "++averaging.decya=0.9"],
    ["-m", "averaging=ema,swa", "++averaging.decya=0.9"],
    ["averaging=ema", "+averaging.decya=0.9"],
])
def test_a_misspelt_key_of_the_averaging_is_refused_before_torch_and_any_folder(tmp_path, args):
    typed = args[-1]
    stderr = refused_before_torch("litlab.train", [*args, *_folders(tmp_path)], cwd=tmp_path)
    assert (f"Error: {typed} gives decya to averaging (litlab.callbacks.weight_averaging.ema, chosen by "
            f"averaging=ema), which has no argument decya: it takes averaging.decay, averaging.warmup, "
            f"averaging.update_every_n_steps. Did you mean averaging.decay? Refused before any work") in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, said", [
    (["model=cnn", "++model.net.hiden_size=64"],
     "gives hiden_size to model.net (litlab.models.cnn.CNN, chosen by model=cnn), which has no argument hiden_size: "
     "it takes model.net.hidden_size, "),
    (["compress=prune", "++compress.finetune.epoch=2"],
     "gives epoch to compress.finetune (litlab.compression.finetune.FineTune, chosen by compress=prune)"),
    # MagnitudePrune passes **kwargs to Compressor.__init__: its finetune and measure are listed too
    (["compress=prune", "++compress.amout=0.5"],
     "it takes compress.amount, compress.schedule, compress.ramp, compress.finetune, compress.measure."),
    # DigitsDataModule passes **kwargs to ImageFolderDataModule: batch_size is the base's
    (["data=digits", "+data.batchsize=32"], "it takes data.batch_size, "),
    (["++callbacks.eval_report.topk=3"], "Did you mean callbacks.eval_report.top_k?"),
    (["mixing=mixup", "++mixing.alhpa=0.4"], "Did you mean mixing.alpha?"),
    (["export=onnx", "++export.opst=17"], "Did you mean export.opset?"),
    (["-m", "seed=1,2", "averaging=swa", "++averaging.start=0.5"], "Did you mean averaging.start_epoch?"),
])
def test_a_key_the_target_does_not_take_is_refused_in_every_group(tmp_path, args, said):
    typed = args[-1]
    with pytest.raises(LitlabError) as e:
        check_overrides([*args, *_folders(tmp_path)])
    assert str(e.value).startswith(f"{typed} gives ")
    assert said in str(e.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("args", [
    ["averaging=ema", "++averaging.decay=0.9"],  # a key of the YAML, set with ++
    ["data=synthetic", "+data.num_workers=0"],  # an argument of SyntheticDataModule that synthetic.yaml lacks
    ["compress=quantize", "+compress.finetune=null"],  # Compressor's, through Quantize's **kwargs
    ["model=cnn", "++model.net._partial_=true"],  # Hydra's own key
    ["++model.compile=true"],  # a speed switch litlab takes off model before building the task
    ["model.net._target_=my_nets.Tiny", "++model.net.width=64"],  # a net of the user's own
    ["-m", "averaging=none,ema", "++averaging.decay=0.9"],  # the empty choice carries it unread
    ["logger=tensorboard", "++logger.tensorboard.flush_every_s=2"],  # **kwargs to Lightning's logger
])
def test_keys_the_target_takes_or_that_cannot_be_told_are_accepted(tmp_path, args):
    check_overrides([*args, *_folders(tmp_path)])


def test_a_key_the_chosen_file_already_has_is_never_refused(tmp_path):
    """A choice of the user's own with a litlab target and a key the target does not take: setting
    that key with ++ is not this rule's to refuse (the file chose it)."""
    own = tmp_path / "own" / "averaging"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("_target_: litlab.callbacks.weight_averaging.ema\ndecay: 0.99\nnote: x\n")
    args = ["--config-dir", str(tmp_path / "own"), "averaging=mine", *_folders(tmp_path)]
    check_overrides([*args, "++averaging.note=y"])
    with pytest.raises(LitlabError, match="gives notes to averaging"):
        check_overrides([*args, "++averaging.notes=y"])


def test_a_key_given_to_a_target_that_takes_no_settings_is_refused(tmp_path):
    """Throughput takes nothing: the close-match search over no keys raised difflib's ValueError."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["++callbacks.throughput.window=3", *_folders(tmp_path)])
    assert ("++callbacks.throughput.window=3 gives window to callbacks.throughput (litlab.callbacks.throughput."
            "Throughput, chosen by callbacks=default), which has no argument window: it takes no settings.") in str(e.value)


def test_an_interpolation_in_any_override_leaves_the_refusal_a_clean_error(tmp_path):
    """The job's overrides are read as typed: ${hydra:runtime.output_dir} resolves only in a run,
    and resolving it here turned the refusal into an InterpolationResolutionError."""
    dirpath = "callbacks.model_checkpoint.dirpath=${hydra:runtime.output_dir}/ck"
    with pytest.raises(LitlabError) as e:
        check_overrides(["averaging=ema", "++averaging.decya=0.9", dirpath, *_folders(tmp_path)])
    assert str(e.value).startswith("++averaging.decya=0.9 gives decya to averaging")
    # the hint repeats the job's overrides as a shell takes them, the refused one left out
    assert f"(python -m litlab.train averaging=ema '{dirpath}' --cfg job --package averaging shows" in str(e.value)
    with pytest.raises(LitlabError) as e:
        check_overrides(["+model.net.foo=${oc.env:LITLAB_NO_SUCH_VARIABLE}", *_folders(tmp_path)])
    assert "gives foo to model.net (litlab.models.cnn.CNN, chosen by model=cnn)" in str(e.value)


@pytest.mark.parametrize("args, said", [
    (["++model.net.num_classes=3"], "litlab sets model.net.num_classes from the data (its number of classes)"),
    (["model=mlp", "+model.net.input_shape=[1,8,8]"], "litlab sets model.net.input_shape from the data (the shape"),
    (["+model.num_classes=3"], "litlab sets model.num_classes from the data (its number of classes)"),
    (["compress=distill", "++compress.student.num_classes=3"], "litlab sets compress.student.num_classes from the data"),
    # a net of the user's own is given them all the same (build.build_model)
    (["model.net._target_=my_nets.Tiny", "++model.net.num_classes=3"], "litlab sets model.net.num_classes from"),
])
def test_an_argument_litlab_passes_itself_is_refused(tmp_path, args, said):
    """litlab's own value replaced the one typed, without a word."""
    with pytest.raises(LitlabError) as e:
        check_overrides([*args, *_folders(tmp_path)])
    assert str(e.value).startswith(f"{args[-1]} gives ")
    assert said in str(e.value)
    assert "so this value would never be used. Remove it." in str(e.value)


def test_the_arguments_litlab_passes_itself_are_not_offered(tmp_path):
    with pytest.raises(LitlabError) as e:
        check_overrides(["++model.net.num_clases=3", *_folders(tmp_path)])
    assert ("which has no argument num_clases: it takes model.net.channels, model.net.hidden_size, model.net.dropout. "
            "(litlab sets model.net.input_shape and model.net.num_classes itself.) Refused") in str(e.value)
    assert "Did you mean" not in str(e.value)


def test_a_student_of_a_compression_method_not_litlabs_distillation_keeps_its_keys(tmp_path):
    """compress.student's input_shape and num_classes are set by litlab's Distill only."""
    check_overrides(["compress=distill", "compress._target_=my_methods.Distill", "++compress.student.num_classes=3",
                     *_folders(tmp_path)])


def test_the_target_named_is_where_it_came_from(tmp_path):
    """``chosen by model=cnn`` only where model=cnn's file gives the target; an override that sets
    it is named, and the --cfg job hint composes the job's own overrides."""
    typed = "model.net._target_=litlab.models.mlp.MLP"
    with pytest.raises(LitlabError) as e:
        check_overrides([typed, "++model.net.foo=3", *_folders(tmp_path)])
    assert f"gives foo to model.net (litlab.models.mlp.MLP, set by {typed}), which has no argument foo" in str(e.value)
    assert f"(python -m litlab.train {typed} --cfg job --package model.net shows" in str(e.value)
    assert "model=cnn" not in str(e.value)
    own = tmp_path / "own" / "experiment"
    own.mkdir(parents=True)
    (own / "mlp_net.yaml").write_text("# @package _global_\nmodel:\n  net:\n    _target_: litlab.models.mlp.MLP\n")
    with pytest.raises(LitlabError) as e:
        check_overrides(["--config-dir", str(tmp_path / "own"), "experiment=mlp_net", "++model.net.foo=3",
                         *_folders(tmp_path)])
    assert "gives foo to model.net (litlab.models.mlp.MLP), which has no argument foo" in str(e.value)
    assert " experiment=mlp_net --cfg job --package model.net shows" in str(e.value)


@pytest.mark.parametrize("args", [["++model.mixing=null"], ["mixing=none", "+model.mixing=0.4"],
                                  ["mixing=mixup", "++model.mixing=0.4"]])
def test_model_mixing_is_refused_as_the_mixing_groups(tmp_path, args):
    """Under mixing=none the value typed reached the task as it was and failed the training, so
    'would never be used' was untrue: the refusal says the key is the mixing group's."""
    with pytest.raises(LitlabError) as e:
        check_overrides([*args, *_folders(tmp_path)])
    assert str(e.value).startswith(f"{args[-1]} gives mixing to model, but model.mixing is the mixing group's, and a "
                                   f"value given here is not a mixer: litlab hands the task the mixer that "
                                   f"mixing=mixup, cutmix or mixup_cutmix builds (its keys are mixing.*).")
    assert "would never be used" not in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("typed, said", [
    ("++trainer.logger=false", "Remove it and choose them with logger=tensorboard, csv or none"),
    ("+trainer.logger=false", "Remove it and choose them with logger=tensorboard, csv or none"),
    ("++trainer.callbacks=[]", "(callbacks=default, early_stopping or none; callbacks.NAME=null drops one"),
    ("++trainer.plugins=[]", "litlab has no key for other plugins (the precision is trainer.precision)"),
])
def test_trainer_arguments_litlab_passes_itself_are_refused_before_torch_and_any_folder(tmp_path, typed, said):
    """build_trainer passes the trainer its callbacks, loggers and plugins: ++trainer.logger=false
    ran with rc 0 and wrote TensorBoard files and checkpoints without a word."""
    # one short epoch, should the key be let through again
    stderr = refused_before_torch("litlab.train", ["trainer.max_epochs=1", typed,
                                                   *_folders(tmp_path)], cwd=tmp_path)
    name = typed.lstrip("+").split("=")[0].split(".")[1]
    assert f"Error: {typed} gives {name} to trainer, but litlab gives the trainer " in stderr
    assert "so this value would never be used" in stderr and said in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_switches_litlab_honours_on_the_trainer_are_let_through(tmp_path):
    """trainer.enable_checkpointing=false and enable_progress_bar=false drop litlab's callbacks of
    that kind (build_trainer); a profiler given replaces litlab's no-op one."""
    check_overrides(["+trainer.enable_checkpointing=false", "+trainer.enable_progress_bar=false",
                     "+trainer.profiler=simple", *_folders(tmp_path)])


def test_a_dict_override_is_the_origin_only_where_it_gives_the_target(tmp_path):
    """model.net={hidden_size:64} keeps model=cnn's target: it was named as where the target came from."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["model.net={hidden_size:64}", "+model.net.hiden=1", *_folders(tmp_path)])
    assert "gives hiden to model.net (litlab.models.cnn.CNN, chosen by model=cnn), which has" in str(e.value)
    given = "+model={net:{_target_:litlab.models.mlp.MLP}}"
    with pytest.raises(LitlabError) as e:
        check_overrides([given, "+model.net.hiden=1", *_folders(tmp_path)])
    assert f"gives hiden to model.net (litlab.models.mlp.MLP, set by {given}), which has" in str(e.value)


def test_the_trainer_refusals_are_those_of_the_entry_points_own_trainer(tmp_path):
    """train and eval pass the trainer litlab's checkpoint writer as its plugins (build_trainer).
    lr_find's trainer overrides are carried to the train command it prints, so it refuses what
    train refuses; eval's trainer has neither checkpoints nor a progress bar, so a value typed for
    those is never used there."""
    for entry, more in (("train", []), ("eval", ["ckpt_path=run.ckpt"]), ("lr_find", [])):
        with pytest.raises(LitlabError) as e:
            check_overrides(["+trainer.plugins=[]", *more, *_folders(tmp_path)], entry)
        assert "litlab gives the trainer its own plugin (the checkpoint writer" in str(e.value)
    # eval has no checkpoint or progress-bar callback, so build_trainer turns both off there
    with pytest.raises(LitlabError) as e:
        check_overrides(["ckpt_path=run.ckpt", "+trainer.enable_progress_bar=true", *_folders(tmp_path)], "eval")
    assert "but the evaluation shows no progress bar (litlab gives its trainer enable_progress_bar=False)" in str(
        e.value)
    # train's default callbacks have both a checkpoint and a progress bar, so true there is what build_trainer does
    check_overrides(["+trainer.enable_progress_bar=true", "+trainer.enable_checkpointing=true", *_folders(tmp_path)])


CARRIED = "lr_find hands its trainer overrides on to the train command it prints, and there "


def _verdict(args: list[str], entry: str) -> str:
    """Why ``entry`` refuses ``args`` (lr_find's words on carrying its overrides on cut off), or 'accepted'."""
    try:
        check_overrides(args, entry)
    except LitlabError as e:
        return str(e).replace(CARRIED, "")
    return "accepted"


@pytest.mark.parametrize("typed", [
    "+trainer.plugins=[]", "++trainer.callbacks=[]", "+trainer.logger=false", "++trainer.logger=true",
    "+trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false",
    "+trainer.enable_progress_bar=true", "+trainer.enable_checkpointing=true", "+trainer.profiler=simple",
])
@pytest.mark.parametrize("more", [[], ["callbacks=none"]])
def test_lr_find_refuses_and_accepts_the_trainer_keys_train_does(tmp_path, typed, more):
    """lr_find's trainer overrides reach the ``train with:`` command it prints: lr_find accepted
    +trainer.plugins=[] and printed a command train then refused, and refused
    +trainer.enable_progress_bar=false, which train accepts and honours."""
    args = [*more, typed, *_folders(tmp_path)]
    verdict = _verdict(args, "train")
    assert _verdict(args, "lr_find") == verdict
    litlabs_own = typed.split("=")[0].rsplit(".", 1)[-1] in ("plugins", "callbacks", "logger")
    assert (verdict != "accepted") == (litlabs_own or (typed.endswith("=true") and more == ["callbacks=none"]))


@pytest.mark.parametrize("entry", ["train", "lr_find"])
@pytest.mark.parametrize("switch, entry_name, gives", [
    ("enable_checkpointing", "model_checkpoint", "checkpoints"),
    ("enable_progress_bar", "progress_bar", "a progress bar"),
])
def test_a_true_switch_with_no_callback_of_that_kind_is_refused(tmp_path, entry, switch, entry_name, gives):
    """build_trainer sets both switches from the callbacks present: under callbacks=none a true
    typed was accepted and did nothing. false stays honoured, and the entry brought back lets true through."""
    typed = f"+trainer.{switch}=true"
    with pytest.raises(LitlabError) as e:
        check_overrides(["callbacks=none", typed, *_folders(tmp_path)], entry)
    assert str(e.value).startswith(
        f"{typed} asks the trainer for {gives}, but litlab turns trainer.{switch} on itself when "
        f"callbacks.{entry_name} is there, and this run's callbacks have no callbacks.{entry_name}")
    assert not (tmp_path / "run").exists()
    with pytest.raises(LitlabError, match=f"no callbacks.{entry_name}"):
        check_overrides([f"callbacks.{entry_name}=null", typed, *_folders(tmp_path)], entry)
    check_overrides(["callbacks=none", f"+trainer.{switch}=false", *_folders(tmp_path)], entry)
    check_overrides(["callbacks=none", typed, f"+callbacks.{entry_name}={{_target_:x.Y}}", *_folders(tmp_path)], entry)


@pytest.mark.parametrize("args, said", [
    (["compress=prune", "+compress.student.num_classes=3"],
     "+compress.student.num_classes=3 gives student to compress (litlab.compression.pruning.MagnitudePrune, chosen "
     "by compress=prune), which has no argument student: it takes compress.amount, "),
    (["averaging=ema", "++averaging.decya.x=1"],
     "++averaging.decya.x=1 gives decya to averaging (litlab.callbacks.weight_averaging.ema, chosen by averaging=ema), "
     "which has no argument decya: it takes averaging.decay, "),
])
def test_a_key_under_an_argument_the_target_does_not_take_is_refused(tmp_path, args, said):
    """Only an override of exactly ``averaging.decya`` was left out when telling whether the files
    have the key, so ``+compress.student.num_classes=3`` added compress.student itself, was taken for
    a key of the files, and failed 5 s into the run in Compressor.__init__."""
    with pytest.raises(LitlabError) as e:
        check_overrides([*args, *_folders(tmp_path)])
    assert str(e.value).startswith(said)
    # the --cfg job hint leaves the refused override out
    assert f"(python -m litlab.train {args[0]} --cfg job --package " in str(e.value)


def _keywords(target: str) -> list[str]:
    """What ``target`` takes by keyword, told by ``inspect`` on the imported class."""
    module, _, name = target.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@pytest.mark.parametrize("typed, where, target, meant, set_aside", [
    ("+callbacks.learning_rate_monitor.logging_intervall=step", "callbacks.learning_rate_monitor",
     "litlab.callbacks.lr_monitor.LearningRateMonitor", "logging_interval", ()),
    ("+model.optimizer.betass=[0.9,0.99]", "model.optimizer", "torch.optim.AdamW", "betas", ("params",)),
])
def test_a_misspelt_key_of_a_lightning_or_torch_class_is_refused_before_torch_and_any_folder(
        tmp_path, typed, where, target, meant, set_aside):
    """Both composed, made the run's folder, prepared the data and failed when the class was built
    (about 6 s on the digits), as their arguments were not read: Lightning's (litlab's monitor
    inherits its __init__) and torch.optim's."""
    stderr = refused_before_torch("litlab.train", ["trainer.max_epochs=1", typed, *_folders(tmp_path)], cwd=tmp_path)
    name = typed.lstrip("+").split("=")[0].rpartition(".")[2]
    assert f"Error: {typed} gives {name} to {where} ({target}, chosen by " in stderr
    listed = re.search(r"which has no argument \w+: it takes (.*?)\. Did you mean (\S+)\?", stderr)
    assert listed is not None, stderr
    assert set(listed[1].split(", ")) == {f"{where}.{k}" for k in _keywords(target) if k not in set_aside}
    assert listed[2] == f"{where}.{meant}"
    if set_aside:
        assert f"(litlab sets {where}.{set_aside[0]} itself.)" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, said", [
    (["callbacks=early_stopping", "+callbacks.early_stopping.patiance=3"],
     "(litlab.callbacks.early_stopping.EarlyStopping, chosen by callbacks=early_stopping), which has no argument "
     "patiance: it takes callbacks.early_stopping.patience, "),
    (["+model.scheduler.eta_minn=0.0"], "(torch.optim.lr_scheduler.CosineAnnealingLR, chosen by model=cnn), which has "
                                        "no argument eta_minn: it takes model.scheduler.eta_min, "),
    (["+trainer.max_epochz=3"], "(lightning.pytorch.Trainer, chosen by trainer=default), which has no argument "
                                "max_epochz: it takes trainer.max_epochs, "),
    (["model.optimizer._target_=torch.optim.SGD", "+model.optimizer.momentun=0.9"],
     "(torch.optim.SGD, set by model.optimizer._target_=torch.optim.SGD), which has no argument momentun: it takes "
     "model.optimizer.momentum, "),
])
def test_a_key_lightnings_or_torchs_class_does_not_take_is_refused(tmp_path, args, said):
    with pytest.raises(LitlabError) as e:
        check_overrides([*args, *_folders(tmp_path)])
    assert str(e.value).startswith(f"{args[-1]} gives ")
    assert said in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ["+model.optimizer.betas=[0.9,0.99]"],
    ["+model.scheduler.eta_min=0.0"],
    ["callbacks=early_stopping", "+callbacks.early_stopping.verbose=true"],
    ["+callbacks.learning_rate_monitor.log_momentum=true"],
    ["++trainer.detect_anomaly=false"],
    ["model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau", "~model.scheduler.T_max",
     "+model.scheduler.factor=0.5"],
])
def test_keys_lightnings_and_torchs_classes_take_are_accepted(tmp_path, args):
    check_overrides([*args, *_folders(tmp_path)])


@pytest.mark.parametrize("typed, said", [
    ("+model.optimizer.params=[1]", "litlab gives the optimizer the net's parameters itself"),
    ("+model.scheduler.optimizer=x", "litlab gives the schedule the optimizer built from model.optimizer itself"),
])
def test_the_optimizer_and_schedule_arguments_litlab_passes_itself_are_refused(tmp_path, typed, said):
    """The partials are finished with params=/optimizer=, whose value wins over the one typed, which
    was dropped without a word."""
    with pytest.raises(LitlabError) as e:
        check_overrides([typed, *_folders(tmp_path)])
    assert str(e.value).startswith(f"{typed} gives {typed.split('.')[2].split('=')[0]} to ")
    assert said in str(e.value)
    assert "so this value would never be used. Remove it." in str(e.value)


def test_params_and_optimizer_keys_are_a_users_own_tasks(tmp_path, monkeypatch):
    """Only litlab's Classifier finishes model.optimizer with params= and model.scheduler with
    optimizer=: a task of the user's own gets those keys as given, so they are not refused there."""
    (tmp_path / "mytask_r18.py").write_text(
        "class MyTask:\n"
        "    def __init__(self, net, num_classes, optimizer=None, scheduler=None, **kw):\n        pass\n\n\n"
        "class OptSpec:\n    def __init__(self, params='all', lr=1e-3):\n        pass\n\n\n"
        "class SchedSpec:\n    def __init__(self, optimizer='main', gamma=0.5):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    own = ["model._target_=mytask_r18.MyTask", "~model.optimizer", "+model.optimizer={_target_:mytask_r18.OptSpec}",
           "~model.scheduler", "+model.scheduler={_target_:mytask_r18.SchedSpec}", *_folders(tmp_path)]
    check_overrides([*own, "+model.optimizer.params=head", "+model.scheduler.optimizer=main"])
    with pytest.raises(LitlabError, match="litlab gives the optimizer the net's parameters itself"):
        check_overrides(["+model.optimizer.params=head", *_folders(tmp_path)])
