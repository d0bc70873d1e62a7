"""``python -m litlab.train ckpt_path=last hydra.run.dir=RUN`` without the run's overrides (the
README writes ``<its overrides>``) composed the default model and was refused after the data was
prepared as "a different model", without saying what the run was started with. The refusal names
the run's overrides (its ``.hydra/overrides.yaml``) and the whole resume command; where the
command chooses another experiment, model or data and builds another net, it comes before the
data is prepared (``resume_choices``), and it can come before torch (``check_choices_before_start``).
A resume that builds the run's net is not refused for choosing otherwise, nor for keys a resume may
change (``trainer.max_epochs``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from litlab.config_check import compose_checked
from litlab.errors import LitlabError
from tests.conftest import FAST, run_cli

STARTED = ["experiment=digits_mlp", "trainer.max_epochs=2"]


def fake_run(run_dir: Path, overrides: list[str]) -> Path:
    """A run's folder as ``train`` leaves it, as far as the check reads it: its record
    (overrides.yaml, the choices Hydra made in hydra.yaml) and a last.ckpt whose config holds the
    net it trained."""
    cfg = compose_checked(overrides, return_hydra_config=True)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (run_dir / "checkpoints").mkdir()
    config = {"model": {"net": OmegaConf.to_container(cfg.model.net, resolve=True)}}
    torch.save({"litlab": {"config": config}, "state_dict": {}}, run_dir / "checkpoints" / "last.ckpt")
    return run_dir


def resume_check(run_dir: Path, overrides: list[str]) -> None:
    """The check of the command line ``overrides ckpt_path=last hydra.run.dir=RUN``, before torch."""
    from litlab.resume_choices import check_choices_before_start

    check_choices_before_start(compose_checked([*overrides, "ckpt_path=last", f"hydra.run.dir={run_dir}"],
                                               return_hydra_config=True))


def test_forgotten_overrides_are_refused_with_the_resume_command(tmp_path):
    run_dir = fake_run(tmp_path / "run", STARTED)
    with pytest.raises(LitlabError) as refused:
        resume_check(run_dir, [])
    assert str(refused.value) == (
        f"ckpt_path=last: {run_dir / 'checkpoints' / 'last.ckpt'} belongs to a different model than this command "
        f"builds: it chooses experiment=null model=cnn, the run experiment=digits_mlp model=mlp (the run was "
        f"started with: experiment=digits_mlp trainer.max_epochs=2; resume with python -m litlab.train "
        f"experiment=digits_mlp trainer.max_epochs=2 ckpt_path=last hydra.run.dir={run_dir}). A resume composes "
        f"its config from its own overrides, so it needs the run's; keys a resume may change (a larger "
        f"trainer.max_epochs) may follow them. The run's checkpoints and results are as they were.")


@pytest.mark.parametrize("overrides", [
    [*STARTED, "trainer.max_epochs=5"],  # the run's own, with a longer training
    ["model=mlp"],  # other choices, the same net: the other checks judge the rest
])
def test_a_resume_that_builds_the_runs_net_is_not_refused(tmp_path, overrides):
    run_dir = fake_run(tmp_path / "run", STARTED)
    resume_check(run_dir, overrides)


def test_a_run_without_a_record_is_left_to_the_run(tmp_path):
    run_dir = fake_run(tmp_path / "run", STARTED)
    (run_dir / ".hydra" / "hydra.yaml").unlink()  # an older or hand-made folder: nothing to compare with
    resume_check(run_dir, [])


@pytest.mark.slow
def test_the_refusals_of_a_real_resume_name_the_run_and_change_nothing(tmp_path, data_dir):
    """The entrypoint: a run of ``experiment=digits_mlp`` with a smaller net, resumed (a) without
    its overrides, refused before the data is prepared, and (b) with the experiment but not the
    net's width, refused once the net is built ("a different model"); both name the run's
    overrides and the resume command, exit 2 and leave the run's checkpoint and results as they were."""
    run_dir = tmp_path / "run"
    started = ["experiment=digits_mlp", "model.net.hidden_sizes=[16]", "trainer.max_epochs=1"]
    fixed = [o for o in FAST if not o.startswith("trainer.max_epochs")] + [f"paths.data_dir={data_dir}"]
    done = run_cli("litlab.train", *fixed, *started, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    words = " ".join(shlex.quote(w) for w in [*fixed, *started])  # 'model.net.hidden_sizes=[16]' quoted
    said = (f"the run was started with: {words}; resume with python -m litlab.train {words} ckpt_path=last "
            f"hydra.run.dir={run_dir}")
    for given, first in (([], f"ckpt_path=last: {run_dir / 'checkpoints' / 'last.ckpt'} belongs to a different "
                              f"model than this command builds"),
                         (["experiment=digits_mlp"], f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'} belongs to "
                                                      f"a different model")):
        refused = run_cli("litlab.train", *fixed, *given, "ckpt_path=last", f"hydra.run.dir={run_dir}")
        assert refused.returncode == 2, refused.stderr[-3000:]
        message = refused.stderr.strip().splitlines()[-1]
        assert message.startswith(f"Error: {first}") and said in message, message
        assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
        assert json.loads((run_dir / "metrics.json").read_text()) == metrics
        assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == [*fixed, *started]


def test_the_resume_commands_are_built_without_torch(tmp_path):
    """The words of a resume (``run_commands``) are read before torch is imported: the checks of a
    command line (``resume_choices``, ``resume_overrides``) and a sweep job's command imported the
    Interruption callback, and with it torch and Lightning, for them."""
    import subprocess
    import sys

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- model=mlp\n")
    script = (f"import sys; from pathlib import Path; import litlab.resume_choices, litlab.resume_overrides; "
              f"from litlab.sweeps.grid_points import job_command; "
              f"print(job_command('train', Path({str(tmp_path)!r}), 3, ['model=mlp'])); "
              f"print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    command, heavy = done.stdout.strip().splitlines()[-2:]
    assert shlex.split(command) == ["python", "-m", "litlab.train", "model=mlp", f"hydra.run.dir={tmp_path / '3'}"]
    assert heavy == "[]"


@pytest.mark.parametrize("name", ["run", "it's [a run], 2"])
def test_the_refusals_resume_command_is_the_interruptions(tmp_path, name):
    """The command a refused resume names (``started_with``) is the one an interrupted run records
    (``resume_command``): the same overrides left out, the folder quoted the same way."""
    from litlab.resume_choices import started_with
    from litlab.run_commands import resume_command

    run = tmp_path / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "- hparams_search=digits_optuna\n- +hydra.job.env_set.X=1\n- ckpt_path=last\n- model.net.hidden_sizes=[16]\n"
        "- ~callbacks.early_stopping\n")
    said = started_with(run / ".hydra", run)
    assert said == (f"the run was started with: 'model.net.hidden_sizes=[16]' '~callbacks.early_stopping'; "
                    f"resume with {resume_command(run)}")
    (run / ".hydra" / "overrides.yaml").write_text("model: mlp\n")  # not a list: where to look instead
    assert started_with(run / ".hydra", run) == f"its overrides are listed in {run / '.hydra' / 'overrides.yaml'}"


def test_a_resume_of_a_run_killed_while_writing_its_first_last_ckpt_reads_best(tmp_path):
    from litlab.resume_choices import run_checkpoint

    (tmp_path / "checkpoints").mkdir()
    assert run_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"  # neither: the one to name
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert run_checkpoint(tmp_path) == tmp_path / "checkpoints" / "best.ckpt"
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("run_dir_given", [True, False])
def test_a_new_run_from_another_runs_checkpoint_is_not_told_to_train_in_that_run(tmp_path, run_dir_given):
    """A new run (``ckpt_path=PATH``) whose net does not fit another run's checkpoint is told that run's
    overrides and a command that starts a run from the checkpoint, never one that trains in the other
    run's folder (which overwrote its last.ckpt when followed)."""
    from litlab.resume import check_fits_run

    run_a = fake_run(tmp_path / "runA", STARTED)
    best = run_a / "checkpoints" / "best.ckpt"
    run_b = tmp_path / "runB"
    cfg = compose_checked([f"ckpt_path={best}", *([f"hydra.run.dir={run_b}"] if run_dir_given else [])],
                          return_hydra_config=True)
    with pytest.raises(LitlabError) as refused:
        check_fits_run(cfg, torch.nn.Linear(2, 3), {"state_dict": {}}, best)
    said = str(refused.value)
    assert said.endswith(
        f" The checkpoint is {run_a}'s, which was started with: experiment=digits_mlp trainer.max_epochs=2; to "
        f"start a run from it with that net, use python -m litlab.train experiment=digits_mlp trainer.max_epochs=2 "
        f"ckpt_path={best}" + (f" hydra.run.dir={run_b}." if run_dir_given else "."))
    assert f"hydra.run.dir={run_a}" not in said and "resume with" not in said
