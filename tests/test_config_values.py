"""A composed config's values are checked before any work (config_values.py): each mistake is
one paragraph naming the key, where it used to be a traceback after the data was prepared."""

from __future__ import annotations

import pytest

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from tests.helpers import write_image_folder


@pytest.mark.parametrize("overrides,match", [
    (["model.optimizer.lr=${model.optimizer.lrr}"],
     r"^model\.optimizer\.lr=\$\{model\.optimizer\.lrr\} cannot be resolved: Interpolation key 'model\.optimizer\.lrr' "
     r"not found\. A \$\{\.\.\.\} must name a key of the config"),
    (["data=imagefolder", "data.root=${oc.env:LITLAB_TEST_UNSET_VARIABLE}"],
     r"^data\.root=\$\{oc\.env:LITLAB_TEST_UNSET_VARIABLE\} cannot be resolved: .*Environment variable "
     r"'LITLAB_TEST_UNSET_VARIABLE' not found.*\$\{oc\.env:NAME,default\} gives a default"),
    # the scheduler's T_max follows trainer.max_epochs
    (["~trainer.max_epochs"], r"^model\.scheduler\.T_max=\$\{trainer\.max_epochs\} cannot be resolved"),
    (["~seed"], r"^seed is required by python -m litlab\.train and is missing from the config \(an override ~seed "
                r"removes it\)"),
    (["~model"], r"^model is required"),
    (["test=no"], r"^test must be true or false, got 'no'\.$"),
    (["hydra.job.chdir=true"], r"^hydra\.job\.chdir=true is not supported: litlab reads relative paths"),
    (["+seed=3"], r"^\+seed adds a new key, but seed is already a key of the config\. Drop the \+ to set it"),
    (["model.net=???"], r"^model\.net has no value \(\?\?\? in its config file\)"),
])
def test_a_value_that_cannot_be_used_is_named_before_any_work(overrides, match):
    with pytest.raises(LitlabError, match=match):
        check_overrides(overrides, "train")


def test_runtime_interpolations_and_set_variables_pass(monkeypatch, tmp_path):
    """${hydra:...} (the run folder) resolves only inside the job and is left to it."""
    write_image_folder(tmp_path, per_class=1)  # a usable image folder: its train/ listing is checked
    monkeypatch.setenv("LITLAB_TEST_DATA", str(tmp_path))  # a folder that exists: a missing data.root is refused
    cfg = check_overrides(["data=imagefolder", "data.root=${oc.env:LITLAB_TEST_DATA}", "test=false"], "train")
    assert cfg.data.root == str(tmp_path) and cfg.test is False


def test_a_variable_of_the_slurm_nodes_is_left_to_the_jobs(monkeypatch):
    """${oc.env:SLURM_TMPDIR} exists on the compute node only: a SLURM sweep from the login node was
    refused; a local run still names it."""
    import litlab.config_check as config_check

    monkeypatch.setattr(config_check.shutil, "which", lambda name: "/usr/bin/sbatch")
    root = "data.root=${oc.env:LITLAB_TEST_UNSET_VARIABLE}/digits"
    assert check_overrides(["-m", "hydra/launcher=submitit_slurm", "data=imagefolder", root, "seed=1,2"]) is None
    with pytest.raises(LitlabError, match=r"Environment variable 'LITLAB_TEST_UNSET_VARIABLE' not found"):
        check_overrides(["-m", "hydra/launcher=submitit_local", "data=imagefolder", root, "seed=1,2"])


@pytest.mark.parametrize("env,overrides,match", [
    # export LITLAB_ROOT=$SCRATCH with SCRATCH unset: oc.env gives '' (not its default), data went to /data
    ("", [], r"^LITLAB_ROOT is set but empty, so paths\.root_dir \(\$\{oc\.env:LITLAB_ROOT,\.\}\) is '' and the data "
             r"and the outputs would go to /data and /outputs at the file system's root.*Unset it \(unset LITLAB_ROOT\)"),
    (None, ["paths.root_dir=''"], r"^paths\.root_dir is empty, so the data and the outputs would go to /data and "
                                  r"/outputs.*Give it a folder \(paths\.root_dir=DIR\)"),
])
def test_an_empty_root_folder_is_refused_before_any_work(monkeypatch, tmp_path, capsys, env, overrides, match):
    """The command printed nothing wrong and wrote the digits to /data and its runs to /outputs."""
    from litlab.entry import check_cli

    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("LITLAB_ROOT", raising=False)
    else:
        monkeypatch.setenv("LITLAB_ROOT", env)
    with pytest.raises(LitlabError, match=match) as info:
        check_overrides(overrides, "train")
    assert "\n" not in str(info.value)
    with pytest.raises(SystemExit) as exit_info:  # what the command does with it
        check_cli(overrides, "train")
    assert exit_info.value.code == 2 and capsys.readouterr().err == f"Error: {info.value}\n"
    monkeypatch.setenv("LITLAB_ROOT", str(tmp_path))  # a folder in it is used
    cfg = check_overrides([], "train")
    assert cfg.paths.data_dir == f"{tmp_path}/data" and cfg.paths.log_dir == f"{tmp_path}/outputs"


@pytest.mark.parametrize("config_name,overrides,key,value", [
    ("train", ["hydra.run.dir='~/pwrun'"], "hydra.run.dir", "~/pwrun"),
    ("train", ["-m", "seed=1,2", "hydra.sweep.dir='~/sweep'"], "hydra.sweep.dir", "~/sweep"),
    ("train", ["paths.log_dir='~'"], "paths.log_dir", "~"),
    ("train", ["paths.root_dir='~/litlab'"], "paths.root_dir", "~/litlab"),
    ("train", ["paths.data_dir='~/data'"], "paths.data_dir", "~/data"),
    ("train", ["data=imagefolder", "data.root='~/images'"], "data.root", "~/images"),
    ("train", ["data=npz", "data.path='~/digits.npz'"], "data.path", "~/digits.npz"),
    ("train", ["ckpt_path='~/x.ckpt'"], "ckpt_path", "~/x.ckpt"),
    ("eval", ["ckpt_path='~/x.ckpt'"], "ckpt_path", "~/x.ckpt"),
    ("predict", ["ckpt_path=a.ckpt", "input='~/images'"], "input", "~/images"),
    ("predict", ["ckpt_path=a.ckpt", "input=x.npz", "output='~/p.csv'"], "output", "~/p.csv"),
])
def test_a_path_from_the_home_folder_is_refused_before_any_work(monkeypatch, tmp_path, config_name, overrides, key,
                                                                value):
    """A quoted ~ (or zsh's after =) reaches litlab as written: hydra.run.dir='~/pwrun' wrote the run into a
    folder named ~ in the current one, and ckpt_path='~/x.ckpt' was said not to exist."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    full = value.replace("~", str(home), 1)
    with pytest.raises(LitlabError) as info:
        check_overrides(overrides, config_name)
    message = str(info.value)
    assert message.startswith(f"{key}={value} starts with ~, which litlab does not expand: the shell turns ~ into "
                              f"your home folder only where it stands unquoted")
    assert f"would make or read a folder named ~ in the current folder. Write the full path instead, {key}={full}." \
        in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder named ~, nothing in the home folder


def test_a_home_folder_of_another_user_is_refused_too(monkeypatch, tmp_path):
    """~name/... is a shell's too; where no such user exists the message says where the home folder is."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LitlabError, match=r"^data\.root=~litlab-no-such-user/images starts with ~.*Write the full "
                                          r"path instead \(your home folder is .*home\), or \./~litlab-no-such-user/"
                                          r"images for a name that really starts with ~\.$"):
        check_overrides(["data=imagefolder", "data.root='~litlab-no-such-user/images'"], "train")
    # a ~ inside a path is an ordinary character
    assert check_overrides([f"hydra.run.dir='{tmp_path / 'a~b'}'"], "train").hydra.run.dir == str(tmp_path / "a~b")
