"""Messages a user trial found wanting: a misspelt key (Hydra's "use +" led to a second error), an
unquoted ``~`` path (a parser error, then litlab's own once quoted), npz labels stored as strings or
whole-number floats (no word of the dtype's problem or the fix)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from litlab.config_check import check_overrides
from litlab.data.npz import NpzDataModule
from litlab.errors import LitlabError
from litlab.home_overrides import check_home_overrides
from tests.conftest import refused_before_torch
from tests.helpers import write_npz


def refusal(args: list[str], tmp_path: Path) -> str:
    with pytest.raises(LitlabError) as caught:
        check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    return str(caught.value)


# --- 1. a misspelt key: the close keys, and + only where it would be let through ---------------

@pytest.mark.parametrize("args,meant", [
    (["data=imagefolder", "data.root=imgs", "data.chanels=3"], "data.channels"),
    (["trainer.max_epoch=3"], "trainer.max_epochs"),
    (["data.augment.hflp=true"], "data.augment.hflip"),
    (["dta.batch_size=8"], "data.batch_size"),  # the first part misspelt: the key under it is kept
])
def test_a_misspelt_key_gets_the_key_meant_and_no_plus(tmp_path, args, meant):
    """Hydra's "To append to your config use +data.chanels=3" was passed on; the user who followed
    it was refused again, with the "Did you mean data.channels?" that belonged in the first message."""
    message = refusal(args, tmp_path)
    typed = args[-1].split("=")[0]
    assert message.startswith(f"{typed} is not a key of the config (")
    assert f"Did you mean {meant}?" in message
    assert "+" not in message and "append" not in message
    # the command shows the node as this command line composes it (test_early_refusals: item 8)
    package = "" if typed.startswith("dta.") else f" --package {typed.rsplit('.', 1)[0]}"  # dta: no such node
    kept = " ".join([*args[:-1], f"hydra.run.dir={tmp_path / 'run'}"])
    assert f"Check the spelling with `python -m litlab.train {kept} --cfg job{package}`." in message


@pytest.mark.parametrize("typed,meant,not_named", [
    ("model.optimzer.lr=0.1", "model.optimizer.lr?", "fused_optimizer"),  # a value, not a node with lr
    ("callbacks.model_checkpint.monitr=val/loss", "callbacks.model_checkpoint.monitor?", "monitr"),
    ("max_epochs=3", "trainer.max_epochs?", "+"),  # top level: one level down, never +
    ("batch_size=8", "data.batch_size?", "+"),
])
def test_every_key_suggested_exists(tmp_path, typed, meant, not_named):
    """Before: model.fused_optimizer.lr (a value's key), callbacks.model_checkpoint.monitr (refused in
    turn) and "+max_epochs=... adds it" (a top-level key nothing reads) were suggested."""
    message = refusal([typed], tmp_path)
    assert f"Did you mean {meant}" in message
    assert not_named not in message.split("Did you mean", 1)[1]
    cfg = check_overrides([f"hydra.run.dir={tmp_path / 'run'}"])
    named = re.findall(r"(?:Did you mean |also close: |, )([\w.]+\w)", message.split("Check the spelling")[0])
    assert named and all(OmegaConf.select(cfg, key) is not None for key in named), named


def test_a_key_under_a_value_names_the_value(tmp_path):
    """Before: "Did you mean trainer.max_epochs.x?", a key under a number."""
    message = refusal(["trainer.max_epoch.x=1"], tmp_path)
    assert message.startswith("trainer.max_epoch.x is not a key of the config (trainer has no key max_epoch; the "
                              "closest, trainer.max_epochs, is a value, ")
    assert "max_epochs.x" not in message and "+" not in message


def test_two_misspelt_keys_get_the_first_ones_key_meant(tmp_path):
    """Before: the config composed without only the first bad key failed on the second: "+trainer.max_epoch=...
    adds a key"."""
    message = refusal(["trainer.max_epoch=3", "data.batchsize=8"], tmp_path)
    assert "Did you mean trainer.max_epochs?" in message and "+" not in message


@pytest.mark.parametrize("typed,hint", [("hydra.sweeper.n_trial=3", "Did you mean hydra.sweeper.n_trials? "
                                                                   "hydra.sweeper.n_trials is a setting of the Optuna"),
                                        ("hydra.sweeper.foo=3", "it has hydra.sweeper.max_batch_size")])
def test_no_plus_under_hydra(tmp_path, typed, hint):
    """Before: "+hydra.sweeper.n_trial=... adds it"; Hydra's sweeper reads no key it does not know."""
    message = refusal([typed], tmp_path)
    name = typed.split("=")[0]
    assert message.startswith(f"{name} is not a key of the config (hydra.sweeper has no key {name.split('.')[-1]}")
    assert hint in message and "+" not in message


def test_the_key_meant_composes(tmp_path):
    """The suggestion is a key the config has: written as suggested, the command is accepted."""
    message = refusal(["trainer.max_epoch=3"], tmp_path)
    meant = re.search(r"Did you mean (\S+)\?", message).group(1)
    assert check_overrides([f"{meant}=3", f"hydra.run.dir={tmp_path / 'run'}"]).trainer.max_epochs == 3


def test_an_argument_the_file_does_not_set_is_added_with_plus(tmp_path):
    """trainer.detect_anomaly is a Trainer argument that conf/trainer/ does not set: + is right there,
    and the + check lets it through."""
    message = refusal(["trainer.detect_anomaly=true"], tmp_path)
    assert "lightning.pytorch.Trainer takes detect_anomaly, which the config does not have yet: " \
           "+trainer.detect_anomaly=... adds it." in message
    assert check_overrides(["+trainer.detect_anomaly=true", f"hydra.run.dir={tmp_path / 'run'}"]).trainer.detect_anomaly
    message = refusal(["trainer.detect_anomly=true"], tmp_path)
    assert "Did you mean +trainer.detect_anomaly=...?" in message


def test_no_plus_for_a_key_a_litlab_target_does_not_take(tmp_path):
    """+trainer.foo would be refused by the + check: + is not suggested, the keys are listed."""
    message = refusal(["trainer.foo=1"], tmp_path)
    assert "(trainer has no key foo, nor one close to it; it has trainer.default_root_dir, trainer.max_epochs," \
           in message
    assert message.endswith("lightning.pytorch.Trainer takes no argument foo either.")
    assert "+trainer.foo" not in message


@pytest.fixture
def own_net(tmp_path, monkeypatch) -> list[str]:
    """A user's config folder with model=mine: a net of their own (width, not read by the + check)."""
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "mine.yaml").write_text(textwrap.dedent("""
        defaults: [_classifier, _self_]
        net: {_target_: my_nets_for_messages.Tiny, _partial_: true, width: 64}
        """))
    monkeypatch.chdir(tmp_path)
    return ["--config-dir", "my_conf", "model=mine", "data=synthetic"]


def test_a_misspelt_key_of_a_users_own_net(tmp_path, own_net):
    message = refusal([*own_net, "model.net.widht=128"], tmp_path)
    assert "(model.net has no key widht). Did you mean model.net.width?" in message
    assert "+" not in message
    assert (f"`python -m litlab.train --config-dir={tmp_path / 'my_conf'} model=mine data=synthetic "
            f"hydra.run.dir={tmp_path / 'run'} --cfg job --package model.net`") in message


def test_a_new_key_of_a_users_own_net_is_added_with_plus(tmp_path, own_net):
    """Nothing close, and a target whose arguments litlab cannot read: + is the way, and said so."""
    message = refusal([*own_net, "model.net.layers=3"], tmp_path)
    assert "(model.net has no key layers, nor one close to it; it has model.net.width)" in message
    assert message.endswith("if model.net.layers is a key to add, +model.net.layers=... adds it (+ adds a key the "
                            "config does not have).")
    cfg = check_overrides([*own_net, "+model.net.layers=3", f"hydra.run.dir={tmp_path / 'run'}"])
    assert cfg.model.net.layers == 3  # the + check lets a key of the user's own net through


# --- 2. an unquoted ~ at the start of a value ------------------------------------------------

def test_an_unquoted_home_path_gets_the_tilde_message_at_once(tmp_path):
    """data.root=~/imgs got Hydra's LexerNoViableAltException; quoted, litlab's ~ message."""
    unquoted = refusal(["data=imagefolder", "data.root=~/imgs"], tmp_path)
    quoted = refusal(["data=imagefolder", "data.root='~/imgs'"], tmp_path)
    assert unquoted == quoted
    assert unquoted == (
        "data.root=~/imgs starts with ~, which litlab does not expand: the shell turns ~ into your home folder only "
        "where it stands unquoted at the start of a word, and litlab takes paths as written, so it would make or read "
        f"a folder named ~ in the current folder. Write the full path instead, data.root={Path.home()}/imgs.")


@pytest.mark.parametrize("override", ["paths.log_dir=~/logs", "hydra.run.dir=~/runs", "+data.root=~/imgs",
                                      "ckpt_path=~/last.ckpt"])
def test_every_path_key_with_an_unquoted_tilde(tmp_path, override):
    key, value = override.lstrip("+").split("=")
    assert refusal([override], tmp_path).startswith(f"{key}={value} starts with ~, which litlab does not expand")


def test_a_swept_tilde_path_is_named_alone(tmp_path):
    """-m data.root=a,~/b: the value with ~, and its full path (not "data.root=/home/u/a,~/b")."""
    message = refusal(["-m", "data=imagefolder", "data.root=imgs,~/b"], tmp_path)
    assert message.startswith("data.root=~/b starts with ~, which litlab does not expand")
    assert message.endswith(f"Write the full path instead, data.root={Path.home()}/b.")


@pytest.mark.parametrize("override", ["data.root='/tmp/a,~b'", "+tags='run,~x'", "++tags=\"run,~x\""])
def test_a_quoted_value_with_a_tilde_is_taken_as_written(override):
    """Before: the value was split on its commas, quotes and all: "data.root=~b' starts with ~"."""
    check_home_overrides([override], "train")  # no refusal


def test_a_quoted_tilde_list_composes(tmp_path):
    cfg = check_overrides(["tags='run,~x'", f"hydra.run.dir={tmp_path / 'run'}"])
    assert cfg.tags == "run,~x"


def test_a_tilde_in_a_sweep_function_is_named_without_its_bracket(tmp_path):
    """-m data.root=choice(/tmp/a,~/b): before, "data.root=~/b) starts with ~" with a stray bracket."""
    message = refusal(["-m", "data=imagefolder", "data.root=choice(/tmp/a,~/b)"], tmp_path)
    assert message.startswith("data.root=~/b starts with ~, which litlab does not expand")
    assert message.endswith(f"Write the full path instead, data.root={Path.home()}/b.")


def test_a_tilde_value_of_another_key_says_how_to_quote_it(tmp_path):
    message = refusal(["trainer.max_epochs=~3"], tmp_path)
    assert message == ("trainer.max_epochs=~3 starts with ~, which Hydra reads only at the start of an override, "
                       "as ~KEY (remove KEY); a value that starts with ~ is quoted whole, \"trainer.max_epochs='~3'\", "
                       "and litlab takes it as written: it does not expand ~ to your home folder (write the full path "
                       "for a path).")


def test_removing_a_key_with_tilde_still_works(tmp_path):
    """~key and ~key=value are Hydra's delete: not values that start with ~."""
    removed = ["~trainer.deterministic", "~trainer.log_every_n_steps=10"]
    cfg = check_overrides([*removed, f"hydra.run.dir={tmp_path / 'r'}"])
    assert "deterministic" not in cfg.trainer and "log_every_n_steps" not in cfg.trainer


def test_the_trial_command_exits_2_with_the_tilde_message(tmp_path):
    stderr = refused_before_torch("litlab.train", ["data=imagefolder", "data.root=~/imgs"], tmp_path)
    assert "data.root=~/imgs starts with ~, which litlab does not expand" in stderr
    assert "LexerNoViableAltException" not in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing written


# --- 3. npz labels that are not integers -----------------------------------------------------

def _labels_refusal(tmp_path: Path, **replace) -> str:
    path = write_npz(tmp_path / "a.npz", **replace)
    with pytest.raises(LitlabError) as caught:
        NpzDataModule(path=str(path)).setup()
    return str(caught.value)


CLASS_NAMES = np.array(["cat", "dog", "bird", "horse"] * 10, dtype="<U5")


def test_string_labels_name_the_dtype_and_the_fix(tmp_path):
    message = _labels_refusal(tmp_path, y_train=CLASS_NAMES)
    assert message.startswith(f"data.path={tmp_path / 'a.npz'}: y_train holds strings (dtype <U5, such as 'cat'), "
                              f"and labels must be integer class indices counted from 0. ")
    assert ("classes = numpy.unique(numpy.concatenate([y_train, y_val, y_test])) (y_val where the file has one), "
            "then each split saved as numpy.searchsorted(classes, y_train).astype(numpy.int64)") in message


def test_string_and_object_labels_get_one_fix(tmp_path):
    """The object-array refusal and the string one end in the same sentence."""
    strings = _labels_refusal(tmp_path, y_test=CLASS_NAMES[:10])
    objects = _labels_refusal(tmp_path, y_test=CLASS_NAMES[:10].astype(object))
    fix = strings[strings.index("Save it as"):]
    assert fix.startswith("Save it as a numeric array, e.g. numpy.asarray(y_test, dtype=numpy.int64), or map class "
                          "names to integers first, with one list of classes that every split shares")
    assert objects.endswith(fix)


def test_the_fix_for_class_names_loads(tmp_path):
    """The mapping the message gives, done as it says, gives labels litlab reads, and a name only the
    test split has keeps its own index. Before, the advice was searchsorted on the training split's
    classes, which gives "zebra" the index of "horse" without a word."""
    y_train, y_test = CLASS_NAMES, np.array(["zebra", "cat", "dog", "bird", "horse"] * 2)
    classes = np.unique(np.concatenate([y_train, y_test]))
    train, test = (np.searchsorted(classes, y).astype(np.int64) for y in (y_train, y_test))
    assert list(classes[test]) == list(y_test)  # every name maps back to itself
    path = write_npz(tmp_path / "a.npz", y_train=train, y_test=test, num_classes=5)
    dm = NpzDataModule(path=str(path))
    dm.setup()
    assert dm.num_classes == 5


def test_whole_number_float_labels_say_astype(tmp_path):
    message = _labels_refusal(tmp_path, y_train=(np.arange(40) % 3).astype(np.float64))
    assert message == (f"data.path={tmp_path / 'a.npz'}: y_train holds whole numbers of dtype float64, and labels "
                       f"must be of an integer dtype (class indices counted from 0). Save it as integers: "
                       f"y_train.astype(numpy.int64).")


def test_fractional_float_labels_keep_the_plain_refusal(tmp_path):
    message = _labels_refusal(tmp_path, y_train=np.linspace(0, 1, 40))
    assert message.endswith("y_train must be a 1-D array of integer class indices, got shape (40,) and dtype float64.")
