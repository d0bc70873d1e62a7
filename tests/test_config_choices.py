"""Config-group choices on the command line are checked before Hydra starts, in every Hydra form."""

from __future__ import annotations

import pytest

from litlab.config_check import check_choices
from litlab.errors import LitlabError


@pytest.mark.parametrize("argv", [["logger=tensorboard"], ["-m", "model=mlp,cnn"], ["logger=[csv,tensorboard]"],
                                  ["logger=null"], ["trainer=cpu"]])
def test_existing_choices_pass(argv):
    check_choices(argv)


def test_a_shared_base_is_not_a_choice():
    with pytest.raises(LitlabError, match=r"model=_classifier is a base that the choices of conf/model/ share"):
        check_choices(["model=_classifier"])


@pytest.mark.parametrize("argv, named", [(["logger=[csv,tensorbord]"], "logger=tensorbord"),
                                         (["-m", "model=mlp,transformer"], "model=transformer")])
def test_a_missing_choice_is_named(argv, named):
    with pytest.raises(LitlabError, match=rf"{named} is not a choice: conf/\w+/ has"):
        check_choices(argv)


def test_a_sweep_over_a_group_names_keys_its_default_choice_lacks():
    """Hydra composes a sweep's start at the group's default (compress=none, no finetune key) and
    failed there with its own multi-line error, although every job has the key."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=r"^compress\.finetune\.epochs=1: a sweep over compress starts from its "
                                          r"default choice.*Write it as \+\+compress\.finetune\.epochs=1"):
        check_overrides(["-m", "model=mlp", "compress=prune,lowrank", "compress.finetune.epochs=1"])
    assert check_overrides(["-m", "model=mlp", "compress=prune,lowrank", "++compress.finetune.epochs=1"]) is None
    with pytest.raises(LitlabError, match=r"compress\.finetune\.nope is not a key"):  # a real misspelling stays one
        check_overrides(["-m", "compress=prune,lowrank", "compress.finetune.nope=1"])


def test_ckpt_path_last_needs_the_run_folder(tmp_path):
    """Without hydra.run.dir, ckpt_path=last looked in a new timestamped folder, failed there and
    left that folder behind as a failed run."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=r"ckpt_path=last resumes the run in the folder given by hydra\.run\.dir"):
        check_overrides(["ckpt_path=last"])
    (tmp_path / "a" / "checkpoints").mkdir(parents=True)
    (tmp_path / "a" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert check_overrides(["ckpt_path=last", f"hydra.run.dir={tmp_path / 'a'}"]).ckpt_path == "last"


def test_in_a_checkout_a_missing_choice_names_its_conf_folder(monkeypatch):
    """Run from a checkout, litlab's conf/ is the project's own: named by its path from here, with
    --config-dir as the other way in (only hydra.searchpath was named)."""
    from litlab.config_flags import CONF_DIR

    root = CONF_DIR.parents[2]  # a checkout's root, whose src/litlab/conf is a link to its conf/
    monkeypatch.chdir(root)
    with pytest.raises(LitlabError) as error:
        check_choices(["model=transformer"])
    assert str(error.value).endswith(
        f"Pick one of them, or add transformer.yaml to {CONF_DIR.resolve().relative_to(root) / 'model'}/ (or to model/ "
        f"in a folder of your own, given with --config-dir DIR or hydra.searchpath=[file://DIR]).")
    assert "src/litlab" not in str(error.value)  # the folder the message's "conf/model/ has" names
