"""One rule for a ``model.freeze`` that freezes nothing (``frozen_layers.freezes_nothing``): null or
``[]``. train, eval, predict and ``build_task`` read it alike: a blank string (``model.freeze=''``)
names no prefix and is refused by each before torch, where eval used to let it through its command
line check and refuse it, with training's message, once its folder was made and the data prepared."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from litlab.errors import LitlabError
from litlab.init_from_path import check_not_given
from litlab.tasks import frozen_layers
from litlab.training import train
from tests.conftest import make_cfg, refused_before_torch

SHORT = ["model=cnn", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
         "test=false"]
PREFIX_MESSAGE = "model.freeze must be a list of parameter-name prefixes"


@pytest.fixture(scope="module")
def best(tmp_path_factory, data_dir):
    """The best checkpoint of one short run of the CNN on the digits."""
    run = tmp_path_factory.mktemp("freeze_nothing") / "run"
    train(make_cfg(SHORT, run, data_dir))
    return run / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("value, nothing", [
    (None, True), ([], True), ((), True), (OmegaConf.create({"f": []}).f, True),
    ("", False), ("  ", False), ([""], False), ("features", False), (["features"], False),
    (OmegaConf.create({"f": ["features"]}).f, False), ({}, False),
])
def test_only_null_and_an_empty_list_freeze_nothing(value, nothing):
    assert frozen_layers.freezes_nothing(value) is nothing


@pytest.mark.parametrize("value", ["", "  "])
def test_training_refuses_a_blank_string_as_typed(value):
    """The message shows the value typed ('') where it showed [''], a list the user never wrote."""
    with pytest.raises(LitlabError, match=rf"{PREFIX_MESSAGE}.*; got {value!r}\. model\.freeze=\[\] trains every"):
        frozen_layers.freeze_prefixes(value)


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("value, refused", [(None, False), ([], False), ("", True), (["features"], True),
                                            ("features", True)])
def test_eval_and_predict_refuse_what_training_would_freeze_or_refuse(command, value, refused):
    cfg = OmegaConf.create({"model": {"freeze": value}})
    if not refused:
        check_not_given(cfg, command)
        return
    message = rf"^model\.freeze=\S+: {command} reads the weights of ckpt_path as they were trained and trains nothing"
    with pytest.raises(LitlabError, match=rf"{message}.* Remove model\.freeze from the command\.$"):
        check_not_given(cfg, command)


def test_eval_names_a_blank_freeze_quoted():
    """model.freeze='' rather than "model.freeze=: eval reads ..."."""
    with pytest.raises(LitlabError, match=r"^model\.freeze='': eval reads"):
        check_not_given(OmegaConf.create({"model": {"freeze": ""}}), "eval")


@pytest.mark.parametrize("value", ["null", "[]"])
def test_eval_takes_null_and_an_empty_list(best, tmp_path, data_dir, value):
    from litlab.eval import check_before_loading

    cfg = make_cfg([f"ckpt_path={best}", f"++model.freeze={value}"], tmp_path / "e", data_dir, config_name="eval")
    assert check_before_loading(cfg) == "test"


@pytest.mark.parametrize("value", ["''", '""', "[features]"])
def test_eval_refuses_a_blank_or_a_real_freeze_before_torch_and_any_folder(best, tmp_path, value):
    """Before: model.freeze='' passed the command line check; the run made its folder, prepared the data
    and failed on building the task, with training's "model.freeze=[] trains every parameter"."""
    stderr = refused_before_torch("litlab.eval", [f"ckpt_path={best}", f"model.freeze={value}", "hydra.run.dir=run"],
                                  tmp_path)
    text = " ".join(stderr.split())
    assert "eval reads the weights of ckpt_path as they were trained and trains nothing" in text, stderr
    assert "Remove model.freeze from the command." in text and PREFIX_MESSAGE not in text
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_blank_string_before_torch_and_any_folder(tmp_path):
    stderr = refused_before_torch("litlab.train", ["model.freeze=''", f"hydra.run.dir={tmp_path / 'run'}"],
                                  cwd=tmp_path)
    assert f"{PREFIX_MESSAGE}" in stderr and "got ''." in " ".join(stderr.split())
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("value, frozen", [(None, []), ([], []), (OmegaConf.create({"f": []}).f, []),
                                           (["features"], ["features"])])
def test_build_task_reads_the_same_rule(value, frozen):
    """build_task hands the task model.freeze (build_model's freeze) only where it freezes something."""
    from litlab.build import build_task
    from litlab.models.cnn import CNN

    model_cfg = OmegaConf.create({"_target_": "litlab.tasks.classification.Classifier", "freeze": value,
                                  "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}})
    task = build_task(model_cfg, CNN(input_shape=(1, 8, 8), num_classes=10), 10, freeze=model_cfg.freeze)
    assert task.frozen.prefixes == frozen
    with pytest.raises(LitlabError, match=PREFIX_MESSAGE):
        build_task(model_cfg, CNN(input_shape=(1, 8, 8), num_classes=10), 10, freeze="")


@pytest.mark.parametrize("swept, refused", [("[],''", "''"), ("null,[features]", r"\['features'\]"),
                                            ("[],null", None)])
def test_an_eval_sweep_checks_each_swept_freeze_before_its_first_job(tmp_path, swept, refused):
    """Before: the command line check ran on a single run's config alone, so in a sweep job 0 (model.freeze=[])
    was evaluated and job 1 (model.freeze='') refused only after it, once the sweep's folder was made."""
    from litlab.config_check import check_overrides
    from litlab.eval import hydra_argv

    argv = hydra_argv(["-m", f"ckpt_path={tmp_path / 'x.ckpt'}", f"model.freeze={swept}",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    if refused is None:
        assert check_overrides(argv, "eval") is None
        return
    with pytest.raises(LitlabError, match=rf"^model\.freeze={refused}: eval reads the weights of ckpt_path as they "
                                          rf"were trained and trains nothing.* Remove model\.freeze from the command"):
        check_overrides(argv, "eval")


def test_an_eval_sweep_checks_each_swept_init_from(tmp_path):
    from litlab.config_check import check_overrides
    from litlab.eval import hydra_argv

    argv = hydra_argv(["-m", f"ckpt_path={tmp_path / 'x.ckpt'}", f"model.init_from=null,{tmp_path / 'run'}",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(LitlabError, match=r"^model\.init_from=\S+run: eval reads the weights of ckpt_path"):
        check_overrides(argv, "eval")


def test_an_eval_sweep_with_a_blank_freeze_runs_no_job(best, tmp_path):
    """The command the docs promise: refused before torch, no sweep folder made, no job run."""
    stderr = refused_before_torch("litlab.eval", ["-m", f"ckpt_path={best}", "model.freeze=[],''",
                                                  "hydra.sweep.dir=sweep"], tmp_path)
    text = " ".join(stderr.split())
    assert "model.freeze='': eval reads the weights of ckpt_path as they were trained and trains nothing" in text
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists()
