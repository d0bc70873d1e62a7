"""The jobs of an interrupted grid sweep that never started: the sweep's end line and summarize
count them and give the command that runs each (sweep folders written by hand, with the
``multirun.yaml`` Hydra's basic sweeper writes before its first job)."""

from __future__ import annotations

import json
import signal

import pytest
import yaml

from litlab.summarize import main, rank_sweep
from litlab.sweeps import outcome
from litlab.sweeps.interrupted import exit_interrupted
from tests.helpers import BASIC_SWEEPER, write_sweep_record

OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _job(sweep, name, overrides, status="completed", acc=0.9):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps({"status": status, "task": "train", "val/acc": acc,
                                                     "optimized_metric": "val/acc"}))


def test_summarize_names_the_jobs_an_interrupted_grid_never_started(tmp_path, capsys):
    """The user's sweep: model=mlp,cnn, SIGTERM in job 0, job 0 resumed; summarize printed
    "1 jobs ranked" and model=cnn appeared nowhere."""
    s = write_sweep_record(tmp_path / "s", ["data=npz", "data.path=X.npz", "model=mlp,cnn", "trainer.max_epochs=3"])
    # job 0 resumed in its folder: its record holds the resume's ckpt_path=last
    _job(s, "0", ["data=npz", "data.path=X.npz", "model=mlp", "trainer.max_epochs=3", "ckpt_path=last"])
    command = f"python -m litlab.train data=npz data.path=X.npz model=cnn trainer.max_epochs=3 hydra.run.dir={s}/1"
    head = "1 of the sweep's 2 grid jobs never started (no job folder); run each in its own folder of the sweep with:"
    assert rank_sweep(s)["unstarted"] == (head, [("job 1 (model=cnn)", command)])
    main([str(s)])
    out = capsys.readouterr().out
    assert f"{head}\n  job 1 (model=cnn): {command}\n" in out
    assert out.startswith("1 job ranked by val/acc (maximize):")
    assert f"- job 1 (model=cnn): `{command}`" in (s / "summary.md").read_text()
    # run as given, the job is in the sweep folder and nothing is missing any more
    _job(s, "1", ["data=npz", "data.path=X.npz", "model=cnn", "trainer.max_epochs=3"])
    assert rank_sweep(s)["unstarted"] is None


def test_the_sweepers_params_come_first_and_number_the_jobs(tmp_path):
    """hydra.sweeper.params are expanded before the command's overrides, as the basic sweeper does:
    job 1 is lr=1e-3 with model=cnn (Hydra writes 0.001). A job in a folder named otherwise
    (hydra.sweep.subdir) counts by its values."""
    s = write_sweep_record(tmp_path / "s", ["model=mlp,cnn"], params={"model.optimizer.lr": "1e-3,2e-3"})
    _job(s, "0", ["model.optimizer.lr=0.001", "model=mlp"])
    _job(s, "lr2e-3_mlp", ["model.optimizer.lr=0.002", "model=mlp"])
    head, commands = rank_sweep(s)["unstarted"]
    assert head.startswith("2 of the sweep's 4 grid jobs never started")
    assert [label for label, _ in commands] == ["job 1 (model.optimizer.lr=0.001 model=cnn)",
                                                "job 3 (model.optimizer.lr=0.002 model=cnn)"]
    assert commands[1][1] == f"python -m litlab.train model.optimizer.lr=0.002 model=cnn hydra.run.dir={s}/3"


@pytest.mark.parametrize("target, task", [(OPTUNA, ["model.optimizer.lr=interval(1e-4,1e-2)"]),
                                          (BASIC_SWEEPER, ["model=glob(*)", "seed=1,2"]),
                                          (BASIC_SWEEPER, ["seed=shuffle(1,2,3)"])])
def test_nothing_is_said_where_the_jobs_cannot_be_known_again(tmp_path, capsys, target, task):
    """An Optuna search has no fixed grid; glob() and shuffle() may expand otherwise a second time."""
    s = write_sweep_record(tmp_path / "s", task, target=target)
    _job(s, "0", ["seed=1"])
    assert rank_sweep(s)["unstarted"] is None
    main([str(s)])
    assert "never started" not in capsys.readouterr().out


def test_the_sweeps_end_line_names_the_unstarted_jobs_with_their_commands(tmp_path, monkeypatch, capsys):
    """SIGTERM in job 0 of 13: the end line named job 0 alone. The first 10 commands follow it,
    then where the rest are; the folder is quoted for the shell in every command."""
    s = write_sweep_record(tmp_path / "my sweep", ["seed=range(0,13)", "model=mlp"])
    _job(s, "0", ["seed=0", "model=mlp"], status="interrupted")
    monkeypatch.setattr(outcome, "current_sweep_dir", s)
    with pytest.raises(SystemExit) as stop:
        exit_interrupted(signal.SIGTERM)
    assert stop.value.code == 143
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (f"Sweep interrupted by signal SIGTERM in {s}; interrupted jobs: 0. python -m litlab.summarize "
                        f"'{s}' lists its jobs; an interrupted job's metrics.json says how to resume it (resume).")
    assert lines[1].startswith("12 of the sweep's 13 grid jobs never started")
    assert lines[2] == f"  job 1 (seed=1): python -m litlab.train seed=1 model=mlp 'hydra.run.dir='\"'\"'{s}/1'\"'\"''"
    assert [line.split(":")[0] for line in lines[2:12]] == [f"  job {n} (seed={n})" for n in range(1, 11)]
    assert lines[12:] == [f"  and 2 more: python -m litlab.summarize '{s}' lists them all"]


def test_a_sweep_stopped_before_its_first_job_folder_lists_every_job(tmp_path, monkeypatch, capsys):
    s = write_sweep_record(tmp_path / "s", ["model=mlp,cnn"])
    monkeypatch.setattr(outcome, "current_sweep_dir", s)
    with pytest.raises(SystemExit):
        exit_interrupted(signal.SIGINT)
    err = capsys.readouterr().err
    assert "2 of the sweep's 2 grid jobs never started" in err
    assert f"  job 0 (model=mlp): python -m litlab.train model=mlp hydra.run.dir={s}/0\n" in err


def test_a_job_folder_without_its_records_yet_started(tmp_path):
    """A submitit job's folder exists a moment before its .hydra/ and metrics.json: it started,
    and was listed as never started (no job folder)."""
    s = write_sweep_record(tmp_path / "s", ["model=mlp,cnn,gru"])
    _job(s, "0", ["model=mlp"])
    (s / "1").mkdir()
    assert rank_sweep(s)["unstarted"][1] == [
        ("job 2 (model=gru)", f"python -m litlab.train model=gru hydra.run.dir={s}/2")]


def test_summarize_of_a_grid_stopped_before_its_first_job_gives_the_sweeps_command(tmp_path, capsys):
    """Ctrl-C while the first job was starting: summarize said the folder "holds no job folders" and
    to pass a multirun folder, which it was."""
    s = write_sweep_record(tmp_path / "s", ["model=mlp,cnn", "model.optimizer.lr=1e-3,3e-3", "data.path=my data.npz"])
    with pytest.raises(SystemExit) as e:
        main([str(s)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert ("is a grid sweep of 4 jobs that stopped before its first job started: no job has results to rank. Run "
            "the sweep again, into a new folder, with: python -m litlab.train -m model=mlp,cnn "
            "model.optimizer.lr=1e-3,3e-3 'data.path=my data.npz'") in err
    # a folder of no sweep at all keeps its own message
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])
    assert "holds no job folders" in capsys.readouterr().err


def test_the_commands_of_a_sweep_of_ones_own_config_keep_its_config_flags(tmp_path, capsys):
    """A sweep started with --config-dir my_conf --config-name mytrain and hydra.searchpath: the
    commands given for its jobs composed litlab's own train config ("model=tiny is not a choice")."""
    from litlab.config_flags import CONF_DIR

    mine = tmp_path / "my_conf"
    searchpath = f"hydra.searchpath=[file://{mine}]"
    s = write_sweep_record(tmp_path / "s", ["model=tiny", "seed=1,2"],
               job={"name": "train", "config_name": "mytrain"},
               runtime={"config_sources": [{"path": str(CONF_DIR), "schema": "file", "provider": "main"},
                                           {"path": str(mine), "schema": "file", "provider": "command-line"}]})
    record = yaml.safe_load((s / "multirun.yaml").read_text())
    record["hydra"]["overrides"]["hydra"].append(searchpath)
    (s / "multirun.yaml").write_text(yaml.safe_dump(record))
    words = f"--config-dir={mine} --config-name=mytrain '{searchpath}'"
    with pytest.raises(SystemExit):
        main([str(s)])
    assert f"Run the sweep again, into a new folder, with: python -m litlab.train -m {words} model=tiny seed=1,2" in \
        capsys.readouterr().err
    _job(s, "0", ["model=tiny", "seed=1"])
    _, commands = rank_sweep(s)["unstarted"]
    assert commands == [("job 1 (seed=2)", f"python -m litlab.train {words} model=tiny seed=2 hydra.run.dir={s}/1")]
