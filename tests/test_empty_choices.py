"""Keys given to a choice that has no settings (``averaging=none``, ``mixing=none``, ``compress=none``,
``export=none``; ``empty_choices.py``): refused before the run's folder is made, naming the key, the
group's choices and the command with a choice that has the key."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from litlab.config_check import ONE_CHOICE, check_overrides
from litlab.config_flags import CONF_DIR
from litlab.errors import LitlabError


def _empty_choices() -> list[tuple[str, str]]:
    """(group, choice) for every file of a one-choice group of conf/ that holds no keys, read
    from the files here, not from the module under test."""
    found = []
    for group in ONE_CHOICE:
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            node = OmegaConf.load(path)
            if not path.stem.startswith("_") and not node:
                found.append((group, path.stem))
    return found


def test_the_empty_choices_of_conf_are_those_of_averaging_mixing_compress_and_export():
    # the groups whose +group.KEY was silently unused; none of data, model, trainer, paths
    covered = {("averaging", "none"), ("mixing", "none"), ("compress", "none"), ("export", "none")}
    assert covered <= set(_empty_choices())


def test_an_averaging_key_under_averaging_none_is_refused_before_the_run_folder(tmp_path):
    """+averaging.decay=0.9 (Hydra's hint for averaging.decay=0.9) trained without averaging, no word."""
    folder = tmp_path / "run"
    with pytest.raises(LitlabError) as e:
        check_overrides(["+averaging.decay=0.9", f"hydra.run.dir={folder}"])
    assert str(e.value) == (
        f"averaging.decay=0.9 sets a key of averaging=none (the default), which has no settings: nothing would read "
        f"it. The choices of averaging are ema, none, swa; choose one that has decay first: averaging=ema "
        f"(python -m litlab.train hydra.run.dir={folder} averaging=ema averaging.decay=0.9).")
    assert not folder.exists()


def test_the_train_entrypoint_refuses_it_with_exit_2_and_writes_nothing(tmp_path):
    folder = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "litlab.train", "+averaging.decay=0.9", f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: averaging.decay=0.9 sets a key of averaging=none (the default)")
    assert not folder.exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("group,choice", _empty_choices())
def test_every_empty_choice_refuses_a_key(group, choice, tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(LitlabError, match=rf"^{group}\.zzz=1 sets a key of {group}={choice}, which has no settings: "
                                          rf".* none of them has a key zzz"):
        check_overrides([f"{group}={choice}", f"+{group}.zzz=1", f"hydra.run.dir={folder}"])
    assert not folder.exists()


def test_lr_find_names_its_own_command(tmp_path):
    """The mixing refusal named python -m litlab.train under python -m litlab.lr_find."""
    folder = tmp_path / "lrf"
    with pytest.raises(LitlabError) as e:
        check_overrides(["+mixing.prob=0.5", "lr_find.num_steps=30", f"hydra.run.dir={folder}"], "lr_find")
    assert str(e.value).endswith(f"(python -m litlab.lr_find lr_find.num_steps=30 hydra.run.dir={folder} "
                                 f"mixing=mixup mixing.prob=0.5).")
    assert "litlab.train" not in str(e.value)
    assert not folder.exists()


def test_lr_find_entrypoint_refuses_an_averaging_key(tmp_path):
    folder = tmp_path / "lrf"
    done = subprocess.run([sys.executable, "-m", "litlab.lr_find", "averaging.decay=0.9", f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "(python -m litlab.lr_find " in done.stderr and "averaging=ema averaging.decay=0.9)." in done.stderr
    assert not folder.exists()


def test_a_swept_value_is_refused_before_any_job(tmp_path):
    folder = tmp_path / "sweep"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "+averaging.decay=0.9,0.99", f"hydra.sweep.dir={folder}"])
    assert str(e.value).startswith("averaging.decay=0.9,0.99 sets a key of averaging=none (the default)")
    assert str(e.value).endswith(f"(python -m litlab.train -m hydra.sweep.dir={folder} averaging=ema "
                                 f"averaging.decay=0.9,0.99).")
    assert not folder.exists()
    done = subprocess.run([sys.executable, "-m", "litlab.train", "-m", "+averaging.decay=0.9,0.99",
                           f"hydra.sweep.dir={folder}"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "sets a key of averaging=none" in done.stderr, done.stderr
    assert not folder.exists()


def test_a_sweep_whose_other_jobs_choose_a_method_carries_the_key(tmp_path):
    assert check_overrides(["-m", "averaging=none,ema", "++averaging.decay=0.9",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    assert check_overrides(["-m", "export=none,onnx", "++export.opset=17", f"hydra.sweep.dir={tmp_path / 't'}"]) is None


def test_a_chosen_empty_option_is_replaced_in_the_command(tmp_path):
    """averaging=none typed (not the default), and a key only SWA has: the command swaps the choice."""
    with pytest.raises(LitlabError) as e:
        check_overrides(["averaging=none", "averaging.start_epoch=3", "seed=1"])
    assert str(e.value) == (
        "averaging.start_epoch=3 sets a key of averaging=none, which has no settings: nothing would read it. The "
        "choices of averaging are ema, none, swa; choose one that has start_epoch first: averaging=swa "
        "(python -m litlab.train seed=1 averaging=swa averaging.start_epoch=3).")


def test_a_key_of_a_base_counts_for_the_choices_built_on_it(tmp_path):
    from litlab.empty_choices import choice_keys

    # finetune comes from conf/compress/_finetune.yaml, which prune and lowrank list in their defaults
    with pytest.raises(LitlabError, match=r"choose one that has finetune first: compress=(\w+\|)*lowrank\|(\w+\|)*"
                                          r"prune\b.*compress.finetune.epochs=2\)\.$"):
        check_overrides(["+compress.finetune.epochs=2", f"hydra.run.dir={tmp_path / 'r'}"])
    assert "finetune" in choice_keys("compress", "prune", [CONF_DIR])


def test_a_groups_choices_come_from_the_users_folder_too(tmp_path):
    from litlab.empty_choices import group_choices

    own = tmp_path / "my_conf" / "averaging"
    own.mkdir(parents=True)
    (own / "off.yaml").write_text("# no averaging, by another name\n{}\n")
    argv = ["--config-dir", str(tmp_path / "my_conf"), "averaging=off", "+averaging.decay=0.9"]
    assert group_choices("averaging", [CONF_DIR, tmp_path / "my_conf"]) == ["ema", "none", "off", "swa"]
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=off, which has no settings: "
                                          r"nothing would read it\. The choices of averaging are ema, none, off, swa;"):
        check_overrides([*argv, f"hydra.run.dir={tmp_path / 'r'}"])


def test_groups_with_settings_and_collections_are_unchanged(tmp_path):
    """A new key of a choice that has settings is Hydra's to add, as before; callbacks and logger
    are collections, whose keys name entries (a callback of one's own under callbacks=none)."""
    cfg = check_overrides(["+model.foo=1", f"hydra.run.dir={tmp_path / 'a'}"])
    assert cfg.model.foo == 1 and cfg.hydra.runtime.choices.model == "cnn"
    cfg = check_overrides(["averaging=ema", "averaging.decay=0.9", f"hydra.run.dir={tmp_path / 'b'}"])
    assert cfg.averaging.decay == 0.9
    mine = "+callbacks.mine={_target_:litlab.callbacks.throughput.Throughput}"
    cfg = check_overrides(["callbacks=none", mine, f"hydra.run.dir={tmp_path / 'c'}"])
    assert cfg.callbacks.mine._target_ == "litlab.callbacks.throughput.Throughput"
    with pytest.raises(LitlabError, match=r"^model\.fo is not a key of the config"):
        check_overrides(["model.fo=1", f"hydra.run.dir={tmp_path / 'd'}"])


def _suggested_command(message: str) -> list[str]:
    """The arguments of the command a refusal suggests: ``... (python -m litlab.train ARGS).``"""
    return shlex.split(message.rsplit("(python -m litlab.train ", 1)[1].removesuffix(")."))


@pytest.mark.parametrize("key,choice", [("+mixing.prob=0.5", "mixup"), ("+mixing.alpha=0.5", "mixup"),
                                        ("+mixing.switch_prob=0.3", "mixup_cutmix"),
                                        ("+averaging.decay=0.9", "ema"), ("+averaging.start_epoch=3", "swa")])
def test_the_suggested_choice_is_one_that_takes_any_data(key, choice, tmp_path):
    """mixing=cutmix came first in name order, and is refused on sequences; mixup blends any
    input. Where only choices for one kind of data have the key, the first of them."""
    with pytest.raises(LitlabError) as e:
        check_overrides([key, f"hydra.run.dir={tmp_path / 'r'}"])
    group = key.lstrip("+").split(".")[0]
    assert f"{group}={choice} {key.lstrip('+')})." in str(e.value)
    assert [a for a in _suggested_command(str(e.value)) if a.startswith(f"{group}=")] == [f"{group}={choice}"]


def test_the_suggested_command_runs_on_sequences(tmp_path):
    folder = tmp_path / "seq"
    with pytest.raises(LitlabError) as e:
        check_overrides(["data=synthetic_seq", "+mixing.prob=0.5", f"hydra.run.dir={folder}"])
    cfg = check_overrides(_suggested_command(str(e.value)))
    assert cfg.data.kind == "sequence" and cfg.mixing._target_ == "litlab.tasks.batch_mixing.Mixup"
    assert cfg.mixing.prob == 0.5


def test_a_users_own_box_pasting_mixer_is_not_suggested(tmp_path):
    """Whether a choice needs images is read from its file's _target_, also in a folder of one's own."""
    from litlab.empty_choices import suggested_choice

    own = tmp_path / "my_conf" / "mixing"
    own.mkdir(parents=True)
    (own / "aaa_boxes.yaml").write_text("_target_: litlab.tasks.batch_mixing.CutMix\nalpha: 0.5\nprob: 1.0\n")
    (own / "blend.yaml").write_text("_target_: litlab.tasks.batch_mixing.Mixup\nalpha: 0.5\nprob: 1.0\n")
    dirs = [CONF_DIR, tmp_path / "my_conf"]
    assert suggested_choice("mixing", ["aaa_boxes", "blend", "cutmix", "mixup"], dirs) == "blend"
    # none that takes any data: the first in name order
    assert suggested_choice("mixing", ["aaa_boxes", "cutmix"], dirs) == "aaa_boxes"
