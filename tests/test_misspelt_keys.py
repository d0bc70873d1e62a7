"""A misspelt key never gets an argument litlab passes itself as its suggestion: ``misspelt_keys``
reads the one list of them (``target_arguments.passed_by_litlab``), the trainer's by entry point
included. Before, ``trainer.loger=csv`` got "Did you mean +trainer.logger=...?", which the + check
then refused as an argument litlab passes the trainer itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from litlab.config_check import check_overrides
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from litlab.misspelt_keys import not_a_key
from litlab.target_arguments import TRAINER_SET_BY_LITLAB


def refusal(args: list[str], tmp_path: Path, config_name: str = "train") -> str:
    with pytest.raises(LitlabError) as caught:
        check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"], config_name)
    return str(caught.value)


@pytest.mark.parametrize("typed, meant", [("trainer.loger=csv", "logger"), ("trainer.plugin=x", "plugins"),
                                          ("trainer.callback=x", "callbacks")])
def test_train_never_suggests_adding_an_argument_litlab_passes_the_trainer(tmp_path, typed, meant):
    message = refusal([typed], tmp_path)
    key = typed.split("=")[0]
    assert message == (f"{key} is not a key of the config (trainer has no key {key.split('.')[1]}). The closest "
                       f"argument, trainer.{meant}, is one litlab passes itself: "
                       f"{TRAINER_SET_BY_LITLAB['train'][meant]}.")
    assert f"+trainer.{meant}" not in message
    with pytest.raises(LitlabError, match=rf"^\+trainer\.{meant}=x gives {meant} to trainer, but "):
        check_overrides([f"+trainer.{meant}=x", f"hydra.run.dir={tmp_path / 'run'}"])  # what + would have met


def test_the_argument_itself_typed_without_plus_says_litlab_passes_it(tmp_path):
    message = refusal(["trainer.logger=x"], tmp_path)
    assert message.startswith("trainer.logger is not a key of the config (trainer has no key logger). trainer.logger "
                              "is an argument litlab passes itself: litlab gives the trainer the loggers of the logger "
                              "group itself")
    assert "+" not in message


@pytest.mark.parametrize("typed, meant", [("trainer.enable_checkpointin=true", "enable_checkpointing"),
                                          ("trainer.enable_progress_ba=false", "enable_progress_bar")])
def test_eval_reads_its_own_trainer_table(typed, meant):
    """eval's trainer neither checkpoints nor shows a progress bar: its table, not train's, is read."""
    message = str(not_a_key(typed, [typed], Primary("eval", "eval")))
    assert f"The closest argument, trainer.{meant}, is one litlab passes itself: " \
           f"{TRAINER_SET_BY_LITLAB['eval'][meant]}." in message
    assert "+trainer" not in message


def test_train_still_suggests_adding_the_switches_it_lets_through(tmp_path):
    """train leaves trainer.enable_checkpointing to the + check's callback rule, not to this list."""
    message = refusal(["trainer.enable_checkpointin=false"], tmp_path)
    assert "Did you mean +trainer.enable_checkpointing=...?" in message


def test_a_key_close_to_nothing_litlab_passes_keeps_its_message(tmp_path):
    message = refusal(["trainer.max_epoch=3"], tmp_path)
    assert "Did you mean trainer.max_epochs?" in message and "litlab passes" not in message


def test_eval_names_the_argument_typed_as_it_is_before_a_close_key(tmp_path):
    """Before: eval's trainer.enable_progress_bar=false got "Did you mean trainer.enable_model_summary?", a key
    close to it, because the passed-by-litlab branch ran only where no key of trainer was close."""
    message = refusal(["ckpt_path=x.ckpt", "trainer.enable_progress_bar=false"], tmp_path, "eval")
    assert message == ("trainer.enable_progress_bar is not a key of the config (trainer has no key enable_progress_bar)"
                       ". trainer.enable_progress_bar is an argument litlab passes itself: "
                       f"{TRAINER_SET_BY_LITLAB['eval']['enable_progress_bar']}.")


@pytest.mark.parametrize("config_name, typed, some_keys", [
    ("train", "zzzq=1", ["task_name", "seed", "trainer", "model"]),
    ("eval", "zzzq=1", ["ckpt_path", "split", "trainer"]),
    ("predict", "model.freeze=[]", ["ckpt_path", "input", "output", "top_k"]),  # predict has no model node
])
def test_a_top_level_miss_lists_the_top_level_keys(config_name, typed, some_keys):
    """Before: "...nor one close to it; it has no keys", the one-level-down search having emptied the list."""
    message = str(not_a_key(typed, [typed], Primary(config_name, config_name)))
    name = typed.split("=")[0].split(".")[0]
    listed = message.split("; it has ", 1)[1].split("). Check the spelling", 1)[0].split(", ")
    assert message.startswith(f"{typed.split('=')[0]} is not a key of the config (the config has no key {name}, "
                              f"nor one close to it; it has ")
    assert set(some_keys) <= set(listed) and name not in listed
    assert message.endswith(f"Check the spelling with `python -m litlab.{config_name} --cfg job`.")


def test_a_top_level_key_one_level_down_is_still_suggested():
    message = str(not_a_key("max_epoch=1", ["max_epoch=1"], Primary("train", "train")))
    assert "(the config has no key max_epoch). Did you mean trainer.max_epochs?" in message
