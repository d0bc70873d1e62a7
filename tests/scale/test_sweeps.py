"""Sweeps through the real entrypoint: a grid with DDP ranks and a failing job, Optuna, submitit."""

import json

import pytest
import yaml

from litlab.summarize import summarize
from tests.conftest import run_cli

from .tiny_run import TINY, metrics_of


def _jobs(log_dir):
    (sweep_dir,) = (log_dir / "multiruns").iterdir()
    return sweep_dir, sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.slow
def test_grid_with_ddp_ranks_and_a_failing_job_then_summary(tmp_path):
    # lr=inf makes the weights inf after the first step: the NaN loss fails that job, the sweep goes on
    proc = run_cli("litlab.train", "-m", *TINY, "trainer=ddp_cpu", "model.optimizer.lr=3e-3,inf",
                   f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir, jobs = _jobs(tmp_path)
    assert [j.name for j in jobs] == ["0", "1"]
    # every rank of a job used the job's values, and wrote nowhere else
    assert {p.name for p in sweep_dir.iterdir()} == {"0", "1", "multirun.yaml"}
    assert not (tmp_path / "runs").exists()
    good, bad = metrics_of(jobs[0]), metrics_of(jobs[1])
    assert good["status"] == "completed" and good["world_size"] == 2
    assert bad["status"] == "failed"
    assert "loss became NaN or infinite at training step" in bad["error"]
    assert yaml.safe_load((jobs[1] / ".hydra" / "overrides.yaml").read_text())[-2:] == [
        "model.optimizer.lr=inf", f"paths.log_dir={tmp_path}"]

    result = summarize(sweep_dir)
    rows = result["rows"]
    assert [r["job"] for r in rows] == ["0", "1"]
    assert rows[0]["rank"] == 1 and rows[0]["model.optimizer.lr"] == "0.003"
    assert rows[1]["status"] == "failed" and rows[1]["rank"] == "-"
    assert rows[0]["val/acc"] == pytest.approx(good["val/acc"])
    for name in ("summary.csv", "summary.md", "metric_vs_params.png"):
        assert (sweep_dir / name).stat().st_size > 0
    assert list((sweep_dir / "tensorboard_summary").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_optuna_search_records_failed_trials_and_goes_on(tmp_path):
    # sampler seed 1238 draws lr = 1e-3, inf, 1e-3 for these three trials
    # the study kept in a database (the config's way to resume or share one)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_cli("litlab.train", "-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.sampler.seed=1238", "model.optimizer.lr=1e-3,inf", *TINY,
                   f"paths.log_dir={tmp_path}", f"hydra.sweeper.storage={storage}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    assert len(optuna.load_study(study_name="digits_optuna", storage=storage).trials) == 3
    sweep_dir, jobs = _jobs(tmp_path)
    statuses = [metrics_of(j)["status"] for j in jobs]
    assert len(jobs) == 3 and "failed" in statuses and "completed" in statuses
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    finished = [metrics_of(j)["val/acc"] for j in jobs if metrics_of(j)["status"] == "completed"]
    assert best["best_value"] == pytest.approx(max(finished))
    assert best["best_params"]["model.optimizer.lr"] == pytest.approx(1e-3)
    rows = summarize(sweep_dir)["rows"]
    assert rows[-1]["status"] == "failed" and rows[0]["val/acc"] == pytest.approx(max(finished))


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path):
    proc = run_cli("litlab.train", "-m", "hydra/launcher=submitit_local", *TINY, "model.optimizer.lr=3e-3",
                   f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir, jobs = _jobs(tmp_path)
    assert [metrics_of(j)["status"] for j in jobs] == ["completed"]
    assert (sweep_dir / ".submitit").is_dir()
    assert "ConfigStore schema" not in proc.stderr  # Hydra's warning about the launcher file's name
    lrs = [json.loads((j / "metrics.json").read_text()).get("optimized_metric") for j in jobs]
    assert lrs == ["val/acc"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_a_sweep_whose_every_job_failed_exits_1(tmp_path, launcher):
    """Hydra ends such a sweep with status 0, which scripts and CI took for success; with submitit
    the jobs run in other processes, and it still did after the basic launcher's was fixed."""
    proc = run_cli("litlab.train", "-m", f"hydra/launcher={launcher}", *TINY, "model.net.dropout=1.5,2.5",
                   f"paths.log_dir={tmp_path}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Error: every job of this sweep failed (2: 2 failed)" in proc.stderr and "Traceback" not in proc.stderr
    sweep_dir, jobs = _jobs(tmp_path)
    assert f"(python -m litlab.summarize {sweep_dir} lists them)" in proc.stderr  # the folder, not a placeholder
    assert [metrics_of(j)["status"] for j in jobs] == ["failed", "failed"]
