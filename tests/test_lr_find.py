"""``python -m litlab.lr_find``: the learning-rate range test. The sweep's arithmetic against hand
computations, the steps on the task as training builds it (rates set per step, losses of
accumulated steps, weights left alone), its files, its refusals, and one real command."""

from __future__ import annotations

import csv
import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from litlab.errors import LitlabError
from litlab.tuning.lr_curve import divergence, lr_sequence, smooth, suggest
from litlab.tuning.lr_settings import check_range_command
from tests.conftest import make_cfg, run_cli

# a small MLP on small synthetic images: a step costs ~1 ms
TINY = ["model=mlp", "model.net.hidden_sizes=[32]", "data=synthetic", "data.shape=[1,8,8]", "data.num_train=192",
        "data.num_val=32", "data.num_test=32", "data.batch_size=16"]


# ---- the arithmetic ----------------------------------------------------------------------------

def test_exponential_sweep_starts_at_min_ends_at_max_with_one_ratio():
    lrs = lr_sequence(1e-6, 1.0, 7, "exponential")
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert [b / a for a, b in zip(lrs, lrs[1:])] == pytest.approx([10.0] * 6)


def test_linear_sweep_adds_one_amount_per_step():
    lrs = lr_sequence(0.1, 0.5, 5, "linear")
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_smoothing_is_the_bias_corrected_moving_average():
    # s=0.5: avg 1.0, 1.0, 2.0; corrections 1-0.5, 1-0.25, 1-0.125
    assert smooth([2.0, 1.0, 3.0], 0.5) == pytest.approx([2.0, 1.0 / 0.75, 2.0 / 0.875])
    assert smooth([2.0, 1.0, 3.0], 1.0) == pytest.approx([2.0, 1.0, 3.0])  # no smoothing
    assert math.isnan(smooth([2.0, float("nan")], 0.05)[1])


def test_divergence_stops_on_a_rise_over_the_factor_or_a_nan():
    assert divergence(1.0, [1.0, 5.0], 4.0) is None  # the first two points have no best yet
    assert divergence(1.0, [1.0, 0.9, 3.5], 4.0) is None  # 3.5 < 4 x 0.9
    assert "exceeded 4 x the best 0.9" in divergence(1.0, [1.0, 0.9, 3.7], 4.0)
    assert divergence(1.0, [1.0, 0.9, 3.7], None) is None  # stop_factor=null: every step
    assert "the loss became nan at step 2" in divergence(float("nan"), [1.0, 0.9, float("nan")], 4.0)


def test_suggestion_is_the_steepest_descent_against_log_lr():
    lrs = lr_sequence(1e-6, 1.0, 121, "exponential")  # 20 points per decade
    # falls fastest at lr 1e-3 (log10 = -3), lowest at 1e-1.5, then rises steeply
    x = [math.log10(lr) for lr in lrs]
    loss = [2 - math.tanh(2 * (v + 3)) + 4 * max(0.0, v + 1.5) ** 2 for v in x]
    loss[115] -= 3.0  # a fall in the diverged tail, steeper than any before the lowest point: not suggested
    s = suggest(lrs, loss, begin=10)
    assert s.lr == pytest.approx(1e-3, rel=1e-9) and s.step == 60
    assert s.min_loss_lr == pytest.approx(10 ** -1.5, rel=0.13)  # within one grid step of the minimum
    assert s.min_loss_lr_div10 == pytest.approx(s.min_loss_lr / 10)
    assert s.usable_points == 121 - 10 - 1


def test_no_suggestion_from_too_few_points_or_a_loss_that_never_falls():
    lrs = lr_sequence(1e-6, 1.0, 30, "exponential")
    early_nan = [2.0 - 0.01 * k for k in range(12)] + [float("nan")] * 18
    few = suggest(lrs, early_nan, begin=3)
    assert few.lr is None and few.usable_points == 8 and "only 8 usable point(s) of 30" in few.reason
    rising = suggest(lrs, [1.0 + 0.1 * k for k in range(30)], begin=3)
    assert rising.lr is None and "never fell" in rising.reason


# ---- the steps ----------------------------------------------------------------------------------

def test_recorder_sets_each_step_rate_keeping_the_groups_relative_rates():
    from litlab.tuning.lr_range import RangeRecorder

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    trainer = SimpleNamespace(optimizers=[optimizer], global_step=3)
    recorder = RangeRecorder([1e-4, 1e-3, 1e-2, 1e-1], 0.05, 4.0)
    recorder.on_train_start(trainer, None)
    recorder.on_train_batch_start(trainer, None, None, 0)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-1, 1e-2])


@pytest.fixture(scope="module")
def accumulated_run(tmp_path_factory, data_dir):
    """21 steps of 2 micro-batches each on the tiny MLP, with every training_step's own loss kept."""
    from litlab.build import build_data, build_model
    from litlab.seeding import seed_everything
    from litlab.tuning.lr_range import range_model_config, range_trainer_config, run_range_test
    from litlab.tuning.lr_settings import range_settings

    cfg = make_cfg([*TINY, "+trainer.accumulate_grad_batches=2", "lr_find.num_steps=21"],
                   tmp_path_factory.mktemp("lrf") / "run", data_dir, config_name="lr_find")
    cfg, ignored = range_model_config(cfg)
    seed_everything(cfg.seed)
    dm = build_data(cfg)
    model = build_model(cfg.model, dm.input_shape, dm.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    own_losses = []
    step = model.training_step

    def kept_step(batch, batch_idx):
        loss = step(batch, batch_idx)
        own_losses.append(float(loss.detach()))
        return loss

    model.training_step = kept_step
    settings = range_settings(cfg)
    trainer_cfg, _ = range_trainer_config(cfg.trainer, settings.num_steps)
    result = run_range_test(model, dm, trainer_cfg, settings, cfg.seed)
    return SimpleNamespace(result=result, model=model, before=before, own_losses=own_losses, settings=settings,
                           ignored=ignored)


def test_each_step_runs_at_its_rate_and_records_its_micro_batches_mean_loss(accumulated_run):
    r, s = accumulated_run.result, accumulated_run.settings
    assert r.lrs == pytest.approx(lr_sequence(s.min_lr, s.max_lr, 21, "exponential")[:len(r.lrs)])
    own = accumulated_run.own_losses
    # 2 micro-batches per step: the step's loss is their mean (Lightning hands each one halved)
    assert len(own) == 2 * len(r.losses)
    assert r.losses == pytest.approx([(own[2 * k] + own[2 * k + 1]) / 2 for k in range(len(r.losses))], rel=1e-6)
    assert r.smoothed == pytest.approx(smooth(r.losses, s.smoothing))
    assert accumulated_run.ignored == ["model.scheduler"]  # the cosine schedule is left out


def test_the_sweep_leaves_the_weights_and_the_configured_rate_as_they_were(accumulated_run):
    model = accumulated_run.model
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in accumulated_run.before.items())
    assert model.optimizer_factory.keywords["lr"] == 3e-3


def test_a_nan_loss_at_the_first_step_is_a_user_error():
    from litlab.tuning.lr_range import RangeResult, check_first_step
    from litlab.tuning.lr_settings import RangeSettings

    with pytest.raises(LitlabError, match=r"training loss was nan at the first step, at lr_find.min_lr=1e-07.*"
                                          r"trainer.precision=32"):
        check_first_step(RangeResult(lrs=[1e-7], losses=[float("nan")]), RangeSettings(), {"precision": 32})


def test_a_ddp_trainer_runs_in_one_process_with_the_same_samples_per_step(tmp_path, data_dir):
    from litlab.tuning.lr_range import range_trainer_config

    cfg = make_cfg([*TINY, "trainer=ddp_cpu", "+trainer.accumulate_grad_batches=3"], tmp_path / "run", data_dir,
                   config_name="lr_find")
    node, note = range_trainer_config(cfg.trainer, 50)
    assert (node.devices, node.num_nodes, node.strategy, node.accumulate_grad_batches) == (1, 1, "auto", 6)
    assert (node.max_steps, node.max_epochs, node.limit_val_batches) == (50, -1, 0)
    assert "2 process(es)" in note and "accumulating 6 batches per optimizer step instead of 3" in note


# ---- the files ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory, data_dir):
    """lr_find(cfg) in-process up to lr 1e4, which diverges before the last step."""
    from litlab.tuning.lr_range import lr_find

    run_dir = tmp_path_factory.mktemp("lrf_files") / "run"
    cfg = make_cfg([*TINY, "lr_find.num_steps=60", "lr_find.min_lr=1e-4", "lr_find.max_lr=1e4"], run_dir, data_dir,
                   config_name="lr_find")
    return run_dir, lr_find(cfg)


def test_a_diverging_sweep_stops_early_and_writes_its_curve(diverged_run):
    run_dir, record = diverged_run
    assert record["stopped_early"] and 3 <= record["steps_run"] < 60
    assert "exceeded 4 x the best" in record["stop_reason"] or "the loss became" in record["stop_reason"]
    with open(run_dir / "lr_find.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss"] and len(rows) == record["steps_run"]
    lrs = lr_sequence(1e-4, 1e4, 60, "exponential")
    assert [float(r["lr"]) for r in rows] == pytest.approx(lrs[:len(rows)], rel=1e-5)
    losses = [float(r["loss"]) for r in rows]
    assert [float(r["smoothed_loss"]) for r in rows] == pytest.approx(smooth(losses, 0.05), rel=1e-4, nan_ok=True)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["task"] == "lr_find" and on_disk["status"] == "completed"
    assert on_disk["settings"]["num_steps"] == 60 and on_disk["optimizer"] == "AdamW"
    # from the points before the divergence, at or before the lowest smoothed loss
    assert on_disk["suggested_step"] <= on_disk["min_loss_step"] < record["steps_run"] - 1
    assert on_disk["suggested_lr"] == pytest.approx(lrs[on_disk["suggested_step"]])
    assert on_disk["min_loss_lr_div10"] == pytest.approx(lrs[on_disk["min_loss_step"]] / 10)
    assert (run_dir / "lr_find.png").stat().st_size > 10_000
    # logger=csv (the tests' default): the curve by step
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        logged = list(csv.DictReader(f))
    assert len(logged) == record["steps_run"] and float(logged[0]["lr_find/lr"]) == pytest.approx(1e-4)


def test_a_curve_without_a_suggestion_still_writes_its_files_and_says_why(tmp_path, data_dir, capsys):
    from litlab.tuning.lr_files import write_results
    from litlab.tuning.lr_range import RangeResult

    run_dir = tmp_path / "run"
    cfg = make_cfg(["logger=none"], run_dir, data_dir, config_name="lr_find")
    lrs = lr_sequence(1e-7, 1.0, 20, "exponential")
    losses = [2.3, 2.2, 2.4, 9.0, *[float("nan")] * 16][:4]  # diverged at the fourth step
    result = RangeResult(lrs=lrs[:4], losses=losses, smoothed=smooth(losses, 0.05), stop_reason="diverged")
    suggestion = suggest(result.lrs, result.smoothed, begin=2)
    facts = {"steps_run": 4, "stop_reason": "diverged", "settings": {"num_steps": 20}, "wall_time_s": 1.0,
             **suggestion.as_record()}
    record = write_results(cfg, run_dir, result, suggestion, facts)
    assert record["suggested_lr"] is None and "only 1 usable point(s) of 4" in record["no_suggestion"]
    assert (run_dir / "lr_find.png").is_file() and len((run_dir / "lr_find.csv").read_text().splitlines()) == 5
    assert "no learning rate suggested: only 1 usable point(s) of 4" in capsys.readouterr().out


def test_summarize_leaves_a_range_test_out_of_a_ranking(diverged_run, tmp_path):
    import shutil

    from litlab.summarize import rank_sweep

    runs = tmp_path / "runs"
    shutil.copytree(diverged_run[0], runs / "lr_find_run")
    (runs / "trained").mkdir()
    (runs / "trained" / "metrics.json").write_text(json.dumps({"status": "completed", "task": "train",
                                                               "val/acc": 0.9, "optimized_metric": "val/acc"}))
    table = rank_sweep(runs)
    assert [row["job"] for row in table["rows"]] == ["trained"]
    assert any("task lr_find: lr_find_run" in note for note in table["notes"])


# ---- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("lr_find.min_lr=0", r"lr_find.min_lr must be > 0"),
    ("lr_find.max_lr=1e-8", r"lr_find.max_lr=1e-08 must be greater than lr_find.min_lr=1e-07"),
    ("lr_find.num_steps=5", r"lr_find.num_steps must be an integer >= 20"),
    ("lr_find.mode=cubic", r"lr_find.mode must be one of exponential, linear"),
    ("lr_find.smoothing=0", r"lr_find.smoothing must be in \(0, 1\]"),
    ("lr_find.stop_factor=1", r"lr_find.stop_factor must be > 1"),
    ("+lr_find.steps=50", r"lr_find.steps is not a setting of the range test"),
    ("ckpt_path=some.ckpt", r"ckpt_path=some.ckpt: the range test starts from the config's own initialization"),
    ("debug=fdr", r"trainer.fast_dev_run=True \(debug=fdr\) runs one batch"),
    ("trainer=fsdp", r"trainer.strategy=fsdp: the range test runs in one process"),
    ("model.optimizer._target_=torch.optim.LBFGS", r"model.optimizer._target_=torch.optim.LBFGS: L-BFGS"),
    ("model.optimizer.lr=-1", r"model.optimizer.lr must be a number >= 0"),
])
def test_settings_it_cannot_run_are_refused_naming_the_key(override, message, tmp_path, data_dir):
    cfg = make_cfg([override], tmp_path / "run", data_dir, config_name="lr_find")
    with pytest.raises(LitlabError, match=message):
        check_range_command(cfg)


def test_sweeps_are_refused():
    from litlab.lr_find import check_one_process

    for argv in (["-m", "model=mlp,cnn"], ["hparams_search=digits_optuna"]):
        with pytest.raises(LitlabError, match="one range test per command"):
            check_one_process(argv)


# ---- the command --------------------------------------------------------------------------------

def test_command_writes_its_files_and_prints_the_training_command(tmp_path, data_dir):
    run = tmp_path / "run"
    proc = run_cli("litlab.lr_find", *TINY, "trainer=cpu", "lr_find.num_steps=40", "lr_find.max_lr=10",
                   f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "lr_find" and record["status"] == "completed" and record["suggested_lr"] > 0
    for name in ("lr_find.csv", "lr_find.png", "lr_find.log", ".hydra/config.yaml"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # logger=tensorboard, the default
    line = re.search(r"suggested learning rate: (\S+) \(steepest descent\); train with: (.*)", proc.stdout)
    assert line is not None, proc.stdout[-2000:]
    assert float(line.group(1)) == pytest.approx(record["suggested_lr"], rel=0.05)
    assert line.group(2).startswith(f"python -m litlab.train model.optimizer.lr={line.group(1)} model=mlp ")
    assert "data=synthetic" in line.group(2) and "lr_find." not in line.group(2)
