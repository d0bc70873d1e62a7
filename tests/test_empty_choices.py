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
from tests.helpers import sweeper_params, write_search, write_sweep_record


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
    """lr_find builds no averaging, compression or export: it suggested averaging=ema, read by nothing there too."""
    folder = tmp_path / "lrf"
    done = subprocess.run([sys.executable, "-m", "litlab.lr_find", "averaging.decay=0.9", f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "python -m litlab.lr_find does not use averaging at all" in done.stderr, done.stderr
    assert "python -m litlab.train, which does" in done.stderr and "averaging=ema" not in done.stderr
    assert not folder.exists()


@pytest.mark.parametrize("group,setting", [("averaging", "+averaging.decay=0.9"), ("compress", "+compress.amount=0.5"),
                                           ("export", "+export.opset=17")])
def test_lr_find_says_it_does_not_use_the_group_and_suggests_no_choice(group, setting, tmp_path):
    folder = tmp_path / "lrf"
    with pytest.raises(LitlabError) as e:
        check_overrides([f"{group}=none", setting, f"hydra.run.dir={folder}"], "lr_find")
    message = str(e.value)
    assert message.startswith(f"{setting.lstrip('+')} sets a key of {group}=none, which has no settings")
    assert f"python -m litlab.lr_find does not use {group} at all" in message
    assert "choose one that has" not in message and f"{group}=none " not in message.split("at all")[1]
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
    from litlab.choice_files import choice_keys

    # finetune comes from conf/compress/_finetune.yaml, which prune and lowrank list in their defaults
    with pytest.raises(LitlabError, match=r"choose one that has finetune first: compress=(\w+\|)*lowrank\|(\w+\|)*"
                                          r"prune\b.*compress.finetune.epochs=2\)\.$"):
        check_overrides(["+compress.finetune.epochs=2", f"hydra.run.dir={tmp_path / 'r'}"])
    assert "finetune" in choice_keys("compress", "prune", [CONF_DIR])


def test_a_groups_choices_come_from_the_users_folder_too(tmp_path):
    from litlab.choice_files import group_choices

    own = tmp_path / "my_conf" / "averaging"
    own.mkdir(parents=True)
    (own / "off.yaml").write_text("# no averaging, by another name\n{}\n")
    argv = ["--config-dir", str(tmp_path / "my_conf"), "averaging=off", "+averaging.decay=0.9"]
    assert group_choices("averaging", [CONF_DIR, tmp_path / "my_conf"]) == ["ema", "none", "off", "swa"]
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=off, which has no settings: "
                                          r"nothing would read it\. The choices of averaging are ema, none, off, swa;"):
        check_overrides([*argv, f"hydra.run.dir={tmp_path / 'r'}"])


def test_groups_with_settings_and_collections_are_unchanged(tmp_path):
    """A new key of a choice that has settings is Hydra's to add, as before, where its class takes
    it (one it does not take is target_arguments' to refuse); callbacks and logger are
    collections, whose keys name entries (a callback of one's own under callbacks=none)."""
    cfg = check_overrides(["data=synthetic", "+data.num_workers=0", f"hydra.run.dir={tmp_path / 'a'}"])
    assert cfg.data.num_workers == 0 and cfg.hydra.runtime.choices.data == "synthetic"
    with pytest.raises(LitlabError, match=r"^\+model\.foo=1 gives foo to model \(litlab\.tasks\.classification"):
        check_overrides(["+model.foo=1", f"hydra.run.dir={tmp_path / 'a'}"])
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


# ---- review fixes: jobs of an allowed sweep run alone, choices as composed, typed keys only, pkg:// ----

def _a_setting(group: str) -> tuple[str, str]:
    """``(CHOICE, KEY=VALUE)``: the first choice of ``group`` in conf/ that has a class, and one of
    its own keys with its value, read from the files here."""
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        node = OmegaConf.load(path)
        if "_target_" in node:
            key = next(k for k, v in node.items()
                       if k not in ("_target_", "defaults") and isinstance(v, (int, float, str)))
            return path.stem, f"{key}={node[key]}"
    raise AssertionError(f"no choice of {group} with a class")




def _job_record(folder, overrides):
    """A job's folder with the ``.hydra/overrides.yaml`` Hydra writes for it."""
    import yaml

    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


@pytest.mark.parametrize("group,choice", _empty_choices())
def test_a_job_of_a_sweep_over_an_empty_choice_runs_alone(group, choice, tmp_path):
    """-m averaging=none,ema ++averaging.decay=0.9 records averaging=none ++averaging.decay=0.9 for
    job 0: the grid's command for it, never started, and its resume repeat that, and were refused."""
    from litlab.sweeps.grid_points import unstarted_commands

    other, value = _a_setting(group)
    setting = f"++{group}.{value}"
    sweep = write_sweep_record(tmp_path / "sweep", [f"{group}={choice},{other}", setting])
    _, commands = unstarted_commands(sweep, [])
    command = shlex.split(commands[0][1])  # job 0: the empty choice
    assert command[:3] == ["python", "-m", "litlab.train"] and setting in command
    cfg = check_overrides(command[3:])
    assert cfg.hydra.runtime.choices[group] == choice and cfg.hydra.run.dir == str(sweep / "0")
    key, value = setting.lstrip("+").split("=")
    assert str(OmegaConf.select(cfg, key)) == value
    # the job started: its resume, with the overrides it recorded (the README's command)
    _job_record(sweep / "0", [f"{group}={choice}", setting])
    (sweep / "0" / "checkpoints").mkdir()
    (sweep / "0" / "checkpoints" / "last.ckpt").write_bytes(b"")  # only its presence is read before the run
    assert check_overrides([f"{group}={choice}", setting, "trainer.max_epochs=2", "ckpt_path=last",
                            f"hydra.run.dir={sweep / '0'}"])
    # typed with a single +, or alone in a sweep where no job has the key: still refused
    refused = tmp_path / "refused"
    with pytest.raises(LitlabError, match=rf"^{key}={value} sets a key of {group}={choice}, which has no settings"):
        check_overrides([f"{group}={choice}", setting[1:], f"hydra.run.dir={sweep / '0'}"])
    with pytest.raises(LitlabError, match=rf"^{key}={value} sets a key of {group}={choice}, which has no settings"):
        check_overrides(["-m", f"{group}={choice}", "seed=1,2", setting, f"hydra.sweep.dir={refused}"])
    assert not refused.exists()


@pytest.mark.parametrize("setting", ["++averaging.decay=0.9", "++mixing.prob=0.5", "++compress.finetune.epochs=2"])
def test_a_forced_key_of_an_empty_choice_in_a_new_run_is_refused(setting, tmp_path):
    """++averaging.decay=0.9 on a single run was let through as a sweep's job: the run completed
    without averaging, its config.yaml holding averaging: {decay: 0.9}."""
    folder = tmp_path / "run"
    group = setting.lstrip("+").split(".")[0]
    with pytest.raises(LitlabError) as e:
        check_overrides([setting, f"hydra.run.dir={folder}"])
    assert str(e.value).startswith(f"{setting[2:]} sets a key of {group}=none (the default), which has no settings: "
                                   f"nothing would read it.")
    assert str(e.value).endswith(f" {setting[2:]}).")
    assert not folder.exists()


def test_the_train_entrypoint_refuses_a_forced_key_with_exit_2(tmp_path):
    folder = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "litlab.train", "++averaging.decay=0.9", f"hydra.run.dir={folder}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("Error: averaging.decay=0.9 sets a key of averaging=none (the default)")
    assert not folder.exists() and not (tmp_path / "outputs").exists()


def test_a_forced_key_passes_only_where_the_folders_sweep_recorded_that_line(tmp_path, monkeypatch):
    """What lets ++ through is the very line, recorded for the job of the run's folder."""
    monkeypatch.chdir(tmp_path)
    sweep = write_sweep_record(tmp_path / "sweep", ["averaging=none,ema", "++averaging.decay=0.9"])
    refused = r"^averaging.decay=0.5 sets a key of averaging=none \(the default\), which has no settings"
    # another value than the sweep's, in the folder of its job 0 (never started), then started
    with pytest.raises(LitlabError, match=refused):
        check_overrides(["++averaging.decay=0.5", f"hydra.run.dir={sweep / '0'}"])
    _job_record(sweep / "0", ["averaging=none", "++averaging.decay=0.9"])
    with pytest.raises(LitlabError, match=refused):
        check_overrides(["++averaging.decay=0.5", f"hydra.run.dir={sweep / '0'}"])
    # the sweep's line, given as a relative folder: Hydra's folder, read from where the command runs
    assert check_overrides(["++averaging.decay=0.9", "hydra.run.dir=sweep/0"])
    # beside the sweep's jobs, but not one of them: the grid has 2 jobs; a folder not named by a number
    for folder in (sweep / "2", sweep / "extra", tmp_path / "elsewhere" / "0"):
        with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none"):
            check_overrides(["++averaging.decay=0.9", f"hydra.run.dir={folder}"])
        assert not folder.exists()
    # a single run's own folder records what it was given, which held no averaging key
    _job_record(tmp_path / "single", ["seed=3"])
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none"):
        check_overrides(["++averaging.decay=0.9", "seed=3", f"hydra.run.dir={tmp_path / 'single'}"])


def test_only_the_file_hydra_composes_decides_whether_a_choice_is_empty(tmp_path):
    """A --config-dir's averaging/none.yaml with keys comes after litlab's conf/ in Hydra's search
    order, so Hydra composes conf/'s empty none.yaml; counting the other copy let +averaging.decay
    through unread, and the message listed averaging=ema|none."""
    own = tmp_path / "cdir"
    (own / "averaging").mkdir(parents=True)
    (own / "averaging" / "none.yaml").write_text("decay: 0.5\n")
    (own / "averaging" / "slow.yaml").write_text("_target_: litlab.callbacks.weight_averaging.ema\ndecay: 0.999\n")
    folder = tmp_path / "r"
    # what Hydra composes with that --config-dir: conf/'s empty none, not the one with decay
    cfg = check_overrides(["--config-dir", str(own), "averaging=none", f"hydra.run.dir={tmp_path / 'none'}"])
    assert OmegaConf.to_container(cfg.averaging) == {}
    with pytest.raises(LitlabError) as e:
        check_overrides(["--config-dir", str(own), "+averaging.decay=0.9", f"hydra.run.dir={folder}"])
    assert str(e.value).startswith("averaging.decay=0.9 sets a key of averaging=none (the default), which has no "
                                   "settings: nothing would read it. The choices of averaging are ema, none, slow, "
                                   "swa; choose one that has decay first: averaging=ema|slow (")
    assert not folder.exists()
    cfg = check_overrides(["--config-dir", str(own), "averaging=slow", f"hydra.run.dir={folder}"])
    assert cfg.averaging.decay == 0.999


@pytest.mark.slow
def test_the_none_job_of_an_averaging_sweep_resumes_with_its_recorded_overrides(tmp_path):
    import yaml

    from tests.scale.tiny_run import TINY, metrics_of

    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "litlab.train", "-m", "averaging=none,ema", "++averaging.decay=0.9",
                           *TINY, f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = yaml.safe_load((sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    assert recorded[:2] == ["averaging=none", "++averaging.decay=0.9"]
    again = [o.replace("trainer.max_epochs=1", "trainer.max_epochs=2") for o in recorded]
    done = subprocess.run([sys.executable, "-m", "litlab.train", *again, "ckpt_path=last",
                           f"hydra.run.dir={sweep / '0'}"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = metrics_of(sweep / "0")
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["started_from"] == str(sweep / "0" / "checkpoints" / "last.ckpt")


def _own_conf(tmp_path):
    """A --config-dir with experiments that choose averaging: ema_exp (EMA, decay 0.95) and
    mine_exp (an EMA file of the user's own that lists no decay)."""
    own = tmp_path / "cd"
    (own / "experiment").mkdir(parents=True)
    (own / "averaging").mkdir()
    (own / "experiment" / "ema_exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /averaging: ema\naveraging:\n  decay: 0.95\n")
    (own / "averaging" / "mine.yaml").write_text("_target_: litlab.callbacks.weight_averaging.ema\nwarmup: false\n")
    (own / "experiment" / "mine_exp.yaml").write_text("# @package _global_\ndefaults:\n  - override /averaging: mine\n")
    return own


def test_a_sweep_whose_experiment_chooses_averaging_carries_the_key(tmp_path):
    """The exemption read the typed averaging=... only: an experiment choosing averaging=ema did not count."""
    own = _own_conf(tmp_path)
    assert check_overrides(["-m", "--config-dir", str(own), "experiment=digits_mlp,ema_exp", "++averaging.decay=0.9",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    # a key that no job's choice has (mine lists no decay): not the sweep's, refused
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.5 sets a key of averaging=none \(the default\)"):
        check_overrides(["-m", "--config-dir", str(own), "experiment=digits_mlp,mine_exp", "+averaging.decay=0.5",
                         f"hydra.sweep.dir={tmp_path / 't'}"])
    # no job with averaging: refused
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none \(the default\)"):
        check_overrides(["-m", "experiment=digits_mlp,sequences_gru", "++averaging.decay=0.9",
                         f"hydra.sweep.dir={tmp_path / 'u'}"])
    assert not (tmp_path / "u").exists()


def test_a_key_from_an_experiment_under_a_chosen_empty_option_is_not_refused(tmp_path):
    """experiment=ema_exp averaging=none: the experiment's averaging.decay is merged under none, which
    the user chose; refusing it as typed (and suggesting averaging=ema) was wrong. A key typed is refused."""
    own = _own_conf(tmp_path)
    cfg = check_overrides(["--config-dir", str(own), "experiment=ema_exp", "averaging=none",
                           f"hydra.run.dir={tmp_path / 'r'}"])
    assert cfg.hydra.runtime.choices.averaging == "none" and OmegaConf.to_container(cfg.averaging) == {"decay": 0.95}
    with pytest.raises(LitlabError) as e:
        check_overrides(["--config-dir", str(own), "experiment=ema_exp", "averaging=none", "averaging.decay=0.9",
                         f"hydra.run.dir={tmp_path / 'refused'}"])
    assert str(e.value).startswith("averaging.decay=0.9 sets a key of averaging=none, which has no settings")
    assert "averaging.decay=0.95" not in str(e.value)
    assert not (tmp_path / "refused").exists()


@pytest.fixture
def conf_package(tmp_path, monkeypatch):
    """An importable package of config files (averaging/off.yaml: {}, mixing/gentle.yaml: a Mixup),
    searched with hydra.searchpath=[pkg://NAME]; returns NAME."""
    import importlib

    name = "litlab_test_pkg_conf"
    root = tmp_path / "site"
    for sub in ("averaging", "mixing"):
        (root / name / sub).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    (root / name / "averaging" / "off.yaml").write_text("{}\n")
    (root / name / "mixing" / "gentle.yaml").write_text("_target_: litlab.tasks.batch_mixing.Mixup\nalpha: 0.1\n"
                                                       "prob: 0.5\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return name


def test_choices_are_read_from_a_pkg_search_path(conf_package, tmp_path):
    """hydra.searchpath=[pkg://...] skipped the whole check: +mixing.prob=0.5 ran unmixed (refused before)."""
    searchpath = f"hydra.searchpath=[pkg://{conf_package}]"
    folder = tmp_path / "r"
    with pytest.raises(LitlabError) as e:
        check_overrides([searchpath, "+mixing.prob=0.5", f"hydra.run.dir={folder}"])
    assert str(e.value).startswith(
        "mixing.prob=0.5 sets a key of mixing=none (the default), which has no settings: nothing would read it. The "
        "choices of mixing are cutmix, gentle, mixup, mixup_cutmix, none; choose one that has prob first: "
        "mixing=cutmix|gentle|mixup|mixup_cutmix (")
    for typed in ("+averaging.decay=0.9", "averaging.decay=0.9"):  # Hydra's "not a key" for the second
        with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=off, which has no "
                                              r"settings: nothing would read it\. The choices of averaging are ema, "
                                              r"none, off, swa; .*averaging=ema averaging.decay=0.9\)\.$"):
            check_overrides([searchpath, "averaging=off", typed, f"hydra.run.dir={folder}"])
    assert not folder.exists()
    cfg = check_overrides([searchpath, "mixing=gentle", "mixing.prob=0.25", f"hydra.run.dir={folder}"])
    assert cfg.mixing.prob == 0.25


def test_the_train_entrypoint_refuses_a_key_of_a_packages_empty_choice(conf_package, tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([sys.path[0], os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "litlab.train", f"hydra.searchpath=[pkg://{conf_package}]",
                           "averaging=off", "+averaging.decay=0.9", f"hydra.run.dir={tmp_path / 'r'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: averaging.decay=0.9 sets a key of averaging=off, which has no settings")
    assert not (tmp_path / "r").exists() and not (tmp_path / "outputs").exists()


def test_where_a_choices_file_cannot_be_read_a_node_without_class_or_keys_is_empty():
    """A config that does not record its sources: the node as composed decides, as mixing's old rule did."""
    from litlab.config_flags import Primary
    from litlab.empty_choices import check_empty_choices

    cfg = OmegaConf.create({"hydra": {"runtime": {"choices": {"mixing": "plain"}}}, "mixing": {"prob": 0.5}})
    with pytest.raises(LitlabError, match=r"^mixing.prob=0.5 sets a key of mixing=plain, which has no settings"):
        check_empty_choices(cfg, ["mixing"], ["mixing=plain", "+mixing.prob=0.5"], Primary())
    cfg.mixing._target_ = "litlab.tasks.batch_mixing.Mixup"
    check_empty_choices(cfg, ["mixing"], ["mixing=plain", "+mixing.prob=0.5"], Primary())  # a class: not empty


def test_keys_of_different_choices_are_not_sent_to_one_of_them(tmp_path):
    """+averaging.decay=0.9 +averaging.start_epoch=3 suggested averaging=ema, which has no
    start_epoch: the suggested command failed in turn. Choices are those that have every key."""
    folder = tmp_path / "r"
    with pytest.raises(LitlabError) as e:
        check_overrides(["+averaging.decay=0.9", "+averaging.start_epoch=3", "+averaging.zzz=1",
                         f"hydra.run.dir={folder}"])
    assert str(e.value) == (
        "averaging.decay=0.9 sets a key of averaging=none (the default), which has no settings: nothing would read "
        "it. The choices of averaging are ema, none, swa, and none of them has all of decay, start_epoch and zzz "
        "(decay: averaging=ema; start_epoch: averaging=swa; zzz: no choice): give only the keys of the choice you "
        "mean (python -m litlab.train averaging=CHOICE --cfg job lists them).")
    with pytest.raises(LitlabError) as e:
        check_overrides(["+mixing.prob=0.5", "+mixing.switch_prob=0.3", f"hydra.run.dir={folder}"])
    assert "; choose one that has prob and switch_prob first: mixing=mixup_cutmix (" in str(e.value)
    assert not folder.exists()
    cfg = check_overrides(_suggested_command(str(e.value)))
    assert cfg.mixing.prob == 0.5 and cfg.mixing.switch_prob == 0.3


def test_a_jobs_resume_repeats_the_line_its_sweep_recorded(tmp_path):
    """-m --config-dir=cd experiment=digits_mlp,ema_exp ++averaging.decay=0.9 records the line for
    the job without averaging: its resume runs; the same line in a new folder is refused."""
    own = _own_conf(tmp_path)
    job = tmp_path / "sweep" / "0"
    _job_record(job, ["experiment=digits_mlp", "++averaging.decay=0.9"])
    argv = ["--config-dir", str(own), "experiment=digits_mlp", "++averaging.decay=0.9"]
    cfg = check_overrides([*argv, f"hydra.run.dir={job}"])
    assert cfg.hydra.runtime.choices.averaging == "none" and cfg.averaging.decay == 0.9
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none \(the default\)"):
        check_overrides([*argv, f"hydra.run.dir={tmp_path / 'new'}"])
    assert not (tmp_path / "new").exists()


# ---- review fixes, round 6 ----

@pytest.mark.parametrize("sweep,setting", [
    (["averaging=none,ema"], "++averaging.decya=0.9"),  # a typo: no choice has decya
    (["averaging=none,swa"], "++averaging.decay=0.9"),  # swa has no decay: its job failed, none's ran unread
    (["averaging=choice(none,swa)"], "++averaging.decay=0.9"),  # Optuna's form of a choice
    (["hparams_search=avg_none_swa"], "++averaging.decay=0.9"),  # the sweeper's params: averaging: none,swa
])
def test_a_sweep_carries_only_a_key_that_some_jobs_choice_has(sweep, setting, tmp_path):
    """Any job whose choice had any settings let every key of the group through."""
    folder = tmp_path / "s"
    key = setting.lstrip("+")
    sweep = ["--config-dir", str(_searches(tmp_path)), *sweep]
    with pytest.raises(LitlabError, match=rf"^{key} sets a key of averaging=none( \(the default\))?, which has no "
                                          rf"settings"):
        check_overrides(["-m", *sweep, setting, f"hydra.sweep.dir={folder}"])
    assert not folder.exists()


def _searches(tmp_path):
    """A --config-dir whose hparams_search/avg_none_swa.yaml and avg_none_ema.yaml have the grid
    sweeper search averaging (``hydra.sweeper.params``), as an Optuna search space would."""
    own = tmp_path / "searches"
    for options in ("none,swa", "none,ema"):
        write_search(own, f"avg_{options.replace(',', '_')}", sweeper_params(f"averaging: {options}"))
    return own


def test_the_sweepers_params_count_each_option_that_has_the_key(tmp_path):
    assert check_overrides(["-m", "--config-dir", str(_searches(tmp_path)), "hparams_search=avg_none_ema",
                            "++averaging.decay=0.9", f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    assert check_overrides(["-m", "averaging=choice(none,ema)", "++averaging.decay=0.9",
                            f"hydra.sweep.dir={tmp_path / 't'}"]) is None
    with pytest.raises(LitlabError, match=r"the job with averaging=swa has no key decay"):
        check_overrides(["-m", "averaging=choice(swa,none,ema)", "++averaging.decay=0.9",
                         f"hydra.sweep.dir={tmp_path / 'u'}"])
    assert not (tmp_path / "u").exists()


# ---- review fixes, round 7 ----

@pytest.mark.parametrize("sweep", ["averaging=none,ema,swa", "averaging=ema,swa", "averaging=swa,none,ema"])
def test_a_sweep_key_is_refused_for_a_job_whose_choice_has_settings_but_not_that_key(sweep, tmp_path):
    """++ gives the key to every job: the swa job crashed in instantiate (unexpected keyword 'decay')."""
    folder = tmp_path / "s"
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", sweep, "++averaging.decay=0.9", "seed=1", f"hydra.sweep.dir={folder}"])
    message = str(e.value)
    assert message.startswith("averaging.decay=0.9 is given to every job of the sweep, and the job with "
                              "averaging=swa has no key decay (of the sweep's choices, averaging=ema has it)")
    again = f"python -m litlab.train -m seed=1 hydra.sweep.dir={folder}"
    assert f"{again}-ema averaging=ema ++averaging.decay=0.9, then" in message
    without = "none,swa" if "none" in sweep else "swa"
    assert message.endswith(f"then {again}-{without.replace(',', '-')} averaging={without}.")
    assert not folder.exists()


def test_the_suggested_separate_sweeps_pass(tmp_path):
    assert check_overrides(["-m", "averaging=ema", "++averaging.decay=0.9", "seed=1",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None
    assert check_overrides(["-m", "averaging=none,swa", "seed=1", f"hydra.sweep.dir={tmp_path / 't'}"]) is None


def test_the_train_entrypoint_refuses_the_swa_job_of_a_decay_sweep_with_exit_2(tmp_path):
    folder = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "litlab.train", "-m", "averaging=none,ema,swa",
                           "++averaging.decay=0.9", f"hydra.sweep.dir={folder}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "the job with averaging=swa has no key decay" in done.stderr
    assert not folder.exists() and not (tmp_path / "multirun").exists()


def test_a_grid_jobs_line_passes_only_under_the_choice_that_job_made(tmp_path, monkeypatch):
    """Job 1 of -m averaging=none,ema ++averaging.decay=0.9 chose ema; its line, run in its folder
    without averaging=ema, trained with averaging=none and the key unread."""
    monkeypatch.chdir(tmp_path)
    sweep = write_sweep_record(tmp_path / "sweep", ["averaging=none,ema", "++averaging.decay=0.9"])
    for record in (None, ["averaging=ema", "++averaging.decay=0.9"]):  # never started, then started
        if record:
            _job_record(sweep / "1", record)
        with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none \(the default\)"):
            check_overrides(["++averaging.decay=0.9", f"hydra.run.dir={sweep / '1'}"])
        cfg = check_overrides(["averaging=ema", "++averaging.decay=0.9", f"hydra.run.dir={sweep / '1'}"])
        assert cfg.averaging.decay == 0.9 and cfg.hydra.runtime.choices.averaging == "ema"


def test_a_jobs_resume_that_chose_another_option_by_an_experiment_is_refused(tmp_path):
    own = _own_conf(tmp_path)
    job = tmp_path / "sweep" / "1"
    _job_record(job, ["experiment=ema_exp", "++averaging.decay=0.9"])
    with pytest.raises(LitlabError, match=r"^averaging.decay=0.9 sets a key of averaging=none \(the default\)"):
        check_overrides(["--config-dir", str(own), "experiment=digits_mlp", "++averaging.decay=0.9",
                         f"hydra.run.dir={job}"])


@pytest.mark.parametrize("typed,recorded", [("++averaging.decay=1e-3", "++averaging.decay=0.001"),
                                            ("++mixing.prob=.5", "++mixing.prob=0.5")])
def test_a_recorded_line_is_matched_by_its_value_not_its_text(typed, recorded, tmp_path, monkeypatch):
    """The sweep typed ++averaging.decay=1e-3, Hydra records 0.001: the command as typed was refused."""
    monkeypatch.chdir(tmp_path)
    group = typed.lstrip("+").split(".")[0]
    other, _ = _a_setting(group)
    sweep = write_sweep_record(tmp_path / "sweep", [f"{group}=none,{other}", typed])
    _job_record(sweep / "0", [f"{group}=none", recorded])
    cfg = check_overrides([f"{group}=none", typed, "ckpt_path=null", f"hydra.run.dir={sweep / '0'}"])
    assert OmegaConf.select(cfg, typed.lstrip("+").split("=")[0]) == float(recorded.split("=")[1])
    with pytest.raises(LitlabError, match=rf"^{typed.lstrip('+').split('=')[0]}=0.25 sets a key of {group}=none"):
        check_overrides([f"{group}=none", typed.split("=")[0] + "=0.25", f"hydra.run.dir={sweep / '0'}"])


def test_the_message_names_the_refused_line_first(tmp_path):
    """A resume's recorded +averaging.decay=0.9 and a new ++averaging.warmup=true: the message began
    with the line that was let through, the command's first key of the group."""
    job = tmp_path / "sweep" / "0"
    _job_record(job, ["averaging=none", "+averaging.decay=0.9"])
    with pytest.raises(LitlabError) as e:
        check_overrides(["averaging=none", "+averaging.decay=0.9", "++averaging.warmup=true", f"hydra.run.dir={job}"])
    assert str(e.value).startswith("averaging.warmup=true sets a key of averaging=none, which has no settings")
    with pytest.raises(LitlabError) as e:  # in a sweep, the key no job's choice has
        check_overrides(["-m", "averaging=none,ema", "++averaging.decay=0.9", "++averaging.start_epoch=3",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
    assert str(e.value).startswith("averaging.start_epoch=3 sets a key of averaging=none, which has no settings")


def test_a_choice_that_builds_on_another_with_a_package_is_not_counted_empty(tmp_path):
    """mixing/plain.yaml: defaults [cutmix@_here_, _self_]: choice_keys looked for a file
    'cutmix@_here_', found none, and counted plain as setting nothing."""
    from litlab.choice_files import choice_keys

    own = tmp_path / "cd" / "mixing"
    own.mkdir(parents=True)
    (own / "plain.yaml").write_text("defaults:\n  - cutmix@_here_\n  - _self_\n")
    cfg = check_overrides(["--config-dir", str(tmp_path / "cd"), "mixing=plain", "mixing.alpha=0.3",
                           f"hydra.run.dir={tmp_path / 'r'}"])
    assert cfg.mixing._target_ == "litlab.tasks.batch_mixing.CutMix" and cfg.mixing.alpha == 0.3
    assert choice_keys("mixing", "plain", [CONF_DIR, tmp_path / "cd"]) is None
    assert check_overrides(["-m", "--config-dir", str(tmp_path / "cd"), "mixing=none,plain", "++mixing.alpha=0.3",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_a_command_line_choice_fixes_the_group_over_the_sweepers_params(tmp_path):
    """averaging=none typed: every job ran without averaging, yet params' ema let ++averaging.decay through."""
    folder = tmp_path / "s"
    with pytest.raises(LitlabError, match=r"^averaging\.decay=0\.9 sets a key of averaging=none, which has no "):
        check_overrides(["-m", "--config-dir", str(_searches(tmp_path)), "hparams_search=avg_none_ema",
                         "averaging=none", "++averaging.decay=0.9", f"hydra.sweep.dir={folder}"])
    assert not folder.exists()


def test_a_plus_key_is_refused_where_a_searched_option_already_sets_it(tmp_path):
    """+averaging.decay with params none,ema: Hydra failed every ema job ("Could not append to config")."""
    folder = tmp_path / "s"
    own = str(_searches(tmp_path))
    with pytest.raises(LitlabError) as e:
        check_overrides(["-m", "--config-dir", own, "hparams_search=avg_none_ema", "+averaging.decay=0.9",
                         f"hydra.sweep.dir={folder}"])
    assert str(e.value).startswith("+averaging.decay=0.9 appends averaging.decay to every job of the sweep, but "
                                   "averaging=ema of the sweep already sets decay")
    assert str(e.value).endswith("++averaging.decay=0.9).")
    assert not folder.exists()


def test_a_searched_option_without_the_key_is_refused_like_a_jobs(tmp_path):
    own = write_search(tmp_path / "searches", "avg_all", sweeper_params("averaging: none,ema,swa"))
    with pytest.raises(LitlabError, match=r"the job with averaging=swa has no key decay"):
        check_overrides(["-m", "--config-dir", str(own), "hparams_search=avg_all", "++averaging.decay=0.9",
                         f"hydra.sweep.dir={tmp_path / 's'}"])
