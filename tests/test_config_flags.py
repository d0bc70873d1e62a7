"""Hydra's own flags (``--config-dir``, ``--config-name``, ``--config-path``): litlab's checks, help,
resume commands and DDP child ranks use the config Hydra composes under them, not litlab's ``train``."""

from __future__ import annotations

import os
import re
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from litlab.config_check import check_choices, check_overrides, compose_checked, overrides_of
from litlab.config_flags import CONF_DIR
from litlab.errors import LitlabError

NET = """
import math

import torch.nn as nn


class Tiny(nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                                 nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A user's project folder, the current folder: my_conf/ with a primary config of their own
    (mytrain: litlab's train with their net), one with a fixed run folder and one with chdir, and
    my_nets_for_flags.py next to it. Nothing of it is on sys.path."""
    conf = tmp_path / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny.yaml").write_text(textwrap.dedent("""
        defaults: [_classifier, _self_]
        net: {_target_: my_nets_for_flags.Tiny, _partial_: true, width: 64}
        """))
    (conf / "mytrain.yaml").write_text(textwrap.dedent("""
        defaults: [train, override data: synthetic, override model: tiny, _self_]
        trainer: {max_epochs: 2}
        """))
    (conf / "fixed.yaml").write_text(textwrap.dedent(f"""
        defaults: [train, override data: synthetic, _self_]
        hydra: {{run: {{dir: {tmp_path / 'runs' / 'fixed'}}}}}
        """))
    (conf / "chdir.yaml").write_text("defaults: [train, _self_]\nhydra: {job: {chdir: true}}\n")
    (tmp_path / "my_nets_for_flags.py").write_text(textwrap.dedent(NET))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    sys.modules.pop("my_nets_for_flags", None)
    return tmp_path


USER = ["--config-dir", "my_conf", "--config-name", "mytrain"]


def test_the_checks_compose_the_config_the_flags_name(project):
    """The checks composed litlab's train whatever the flags said: the user's valid keys were
    refused, their chdir passed, and their fixed run folder was written over without a word."""
    cfg = check_overrides([*USER, "data.num_train=300", f"hydra.run.dir={project / 'r'}"])
    assert (cfg.data.num_train, cfg.model.net.width, cfg.trainer.max_epochs) == (300, 64, 2)
    with pytest.raises(LitlabError, match=r"^data\.num_trai is not a key of the config .*Check the spelling with "
                                          rf"`python -m litlab\.train --config-dir={project / 'my_conf'} "
                                          r"--config-name=mytrain --cfg job --package data`"):
        check_overrides([*USER, "data.num_trai=300"])
    with pytest.raises(LitlabError, match=r"^hydra\.job\.chdir=true is not supported"):
        check_overrides(["-cd", "my_conf", "-cn", "chdir"])
    check_choices(["--config-dir", "my_conf", "model=tiny"])  # Hydra finds it there: no "not a choice"
    assert check_overrides(["-cd", "my_conf", "model=tiny", f"hydra.run.dir={project / 'r'}"]).model.net.width == 64
    fixed = ["--config-dir=my_conf", "--config-name=fixed"]
    assert check_overrides(fixed).hydra.run.dir == str(project / "runs" / "fixed")
    (project / "runs" / "fixed").mkdir(parents=True, exist_ok=True)
    (project / "runs" / "fixed" / "metrics.json").write_text('{"status": "completed"}')
    with pytest.raises(LitlabError, match=rf"hydra\.run\.dir={project / 'runs' / 'fixed'} already holds a run"):
        check_overrides(fixed)


def test_help_shows_the_users_own_config(project):
    from litlab.cli_help import help_text

    lines = help_text("train", ["--help", *USER, "data.num_train=300"]).splitlines()
    assert lines[0].startswith(f"python -m litlab.train --config-dir={project / 'my_conf'} --config-name=mytrain: "
                               f"trains")
    assert "  model           [tiny] cnn, gru, lstm, mlp, resnet18, tiny, torchvision" in lines
    assert "  data            [synthetic] digits, imagefolder, npz, synthetic, synthetic_seq" in lines
    assert "  num_train: 300" in lines


@pytest.mark.parametrize("flags, message", [
    (["-cd", "my_conf", "-cn", "nope"],
     r"Error: --config-name nope: there is no nope\.yaml in \S+/conf/ and \S+/my_conf/, where Hydra looks for the "
     r"config to compose \(they hold chdir, eval, fixed, lr_find, mytrain, predict, train\)\. Give one of those"),
    (["--config-dir", "nodir", "seed=1"], r"Error: --config-dir nodir: \S+/nodir is no folder\. Give the folder that "
                                          r"holds your own config files"),
    (["--config-path", "nodir"], r"Error: --config-path nodir: \S+/litlab/nodir is no folder\. --config-path replaces "
                                 r"litlab's own conf/ and a relative one is read from litlab's package folder"),
])
def test_a_missing_config_folder_or_name_is_one_paragraph(project, capsys, flags, message):
    """Hydra's own error for these ended in exit status 1 and lines about its search path."""
    from litlab.entry import check_cli

    with pytest.raises(SystemExit) as exit_info:
        check_cli(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "search path" not in err
    assert re.match(message, err), err


def test_not_a_choice_says_where_a_new_file_is_read(project):
    """It said to add the file to conf/model/: for an installed litlab that is in site-packages,
    and a conf/ folder in the project is not read."""
    with pytest.raises(LitlabError) as error:
        check_choices(["model=tiny"])
    assert str(error.value).startswith("model=tiny is not a choice: conf/model/ has cnn, gru, lstm, mlp, resnet18, "
                                       "torchvision. Pick one of them, or add tiny.yaml to model/ in a folder of your "
                                       "own and give that folder with --config-dir DIR (or "
                                       f"hydra.searchpath=[file://DIR]); conf/ is litlab's own, in {CONF_DIR}, and a "
                                       "conf/ folder in the current folder is not read.")
    with pytest.raises(LitlabError, match=rf"model=tny is not a choice: conf/model/ and {project}/my_conf/model/ have "
                                          rf"cnn, .*tiny, torchvision\. Pick one of them, or add tny\.yaml to "
                                          rf"{project}/my_conf/model/\.$"):
        check_choices([*USER, "model=tny"])


def _recorded_run(project: Path, overrides: list[str]) -> Path:
    """A run folder with the record Hydra writes (``.hydra/hydra.yaml``, ``overrides.yaml``) of
    ``python -m litlab.train overrides``."""
    from litlab.config_flags import primary_of

    run = project / "runs" / "mine"
    cfg = compose_checked(overrides_of(overrides), return_hydra_config=True, primary=primary_of(overrides))
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra)}), run / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(cfg.hydra.overrides.task)), run / ".hydra" / "overrides.yaml")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")  # ckpt_path=last needs one to resume
    return run


def test_the_resume_command_composes_the_run_again(project):
    """The resume command (metrics.json "resume", the interrupted-run line, a lost rank's hint)
    dropped hydra.searchpath and the config flags: pasted, it composed litlab's train, which
    refused the run's own choice (model=wide is not a choice)."""
    from litlab.run_commands import resume_command
    from litlab.resume_overrides import rerun_command

    more = project / "more_conf"
    (more / "model").mkdir(parents=True)
    (more / "model" / "wide.yaml").write_text("defaults: [tiny, _self_]\nnet: {width: 128}\n")
    searchpath = f"hydra.searchpath=[file://{more}]"
    run = _recorded_run(project, [*USER, searchpath, "model=wide", "data.num_train=300"])
    words = shlex.split(resume_command(run))
    assert words == ["python", "-m", "litlab.train", f"--config-dir={project / 'my_conf'}", "--config-name=mytrain",
                     searchpath, "model=wide", "data.num_train=300", "ckpt_path=last", f"hydra.run.dir={run}"]
    cfg = check_overrides(words[3:])  # the pasted command: the run's config, in its folder
    assert (cfg.model.net.width, cfg.data.num_train, cfg.ckpt_path) == (128, 300, "last")
    again = shlex.split(rerun_command(cfg, run, ["compress"]))  # a refused resume's rerun uses the same words
    assert again[3:7] == words[3:7]


def test_a_ddp_child_rank_runs_the_entrypoint_with_the_runs_config_flags(project, monkeypatch):
    """A DDP child ran ``python -m litlab.mytrain`` (the primary config's name as the module) without the flags."""
    from hydra.core.hydra_config import HydraConfig

    import litlab.entry as entry
    from litlab.config_flags import primary_of
    from litlab.distributed.launcher import child_command

    cfg = compose_checked(["data.num_train=300"], return_hydra_config=True, primary=primary_of(USER))
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(project / "runs" / "ddp")
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # put back afterwards
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(entry, "_entrypoint", "train")  # as litlab.train's main() records it
    command = child_command(1)
    assert command[:6] == [sys.executable, "-m", "litlab.train", f"--config-dir={project / 'my_conf'}",
                           "--config-name=mytrain", "data.num_train=300"]
    assert f"hydra.run.dir='{project / 'runs' / 'ddp'}'" in command


def test_a_console_script_imports_the_users_net_from_the_current_folder(project, monkeypatch):
    """``litlab-train`` puts its bin/ folder first on sys.path, not the current folder as ``python -m``
    does: a user's net next to their configs "cannot be imported". Here main() runs as the console
    script does (the project folder not on sys.path), the user's config with its flags, composed
    once before Hydra and once in it."""
    from hydra._internal.hydra import Hydra

    import litlab.train as command
    from litlab.build import check_targets

    composed, seen = [], {}
    compose = Hydra.compose_config

    def counted(self, *args, **kwargs):
        composed.append(1)
        return compose(self, *args, **kwargs)

    def train(cfg):
        check_targets(cfg)  # what train() checks first: every _target_ importable
        seen["width"] = cfg.model.net.width
        return 0.5

    monkeypatch.setattr(Hydra, "compose_config", counted)
    monkeypatch.setattr(command, "_train", train)
    monkeypatch.setattr(sys, "argv", ["litlab-train", *USER, f"hydra.run.dir={project / 'run'}",
                                      "hydra/job_logging=none", "hydra/hydra_logging=none"])
    command.main()
    assert seen == {"width": 64} and sys.path[0] == os.getcwd() == str(project)
    assert len(composed) == 2  # Hydra is handed the mode check_cli composed, flags or not


def test_a_sweep_by_pattern_matches_the_users_own_choices_too(project):
    """``model=glob(...)`` was matched against litlab's conf/model/ alone: "matches none"."""
    assert check_overrides(["-m", *USER, "model=glob(ti*)", f"hydra.sweep.dir={project / 'sweep'}"]) is None
    with pytest.raises(LitlabError, match=r"model=glob\(x\*\) matches none of conf/model/'s choices \(cnn, .*tiny"):
        check_overrides(["-m", *USER, "model=glob(x*)", f"hydra.sweep.dir={project / 'sweep'}"])
