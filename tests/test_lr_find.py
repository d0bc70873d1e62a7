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
    assert divergence(1.0, [1.0, 0.9, 3.7], 4.0) == "the smoothed loss 3.7 exceeded 4 x the best 0.9 after 3 steps"
    assert divergence(1.0, [1.0, 0.9, 3.7], None) is None  # stop_factor=null: every step
    # a count of the steps run, as the summary's "steps 3 of N" (it said "at step 2", an index)
    assert divergence(float("nan"), [1.0, 0.9, float("nan")], 4.0) == "the loss became nan after 3 steps"


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


def test_no_suggestion_from_too_few_points():
    lrs = lr_sequence(1e-6, 1.0, 30, "exponential")
    early_nan = [2.0 - 0.01 * k for k in range(12)] + [float("nan")] * 18
    few = suggest(lrs, early_nan, begin=3)
    assert few.lr is None and few.usable_points == 8 and "only 8 usable point(s) of 30" in few.reason
    assert "more steps (lr_find.num_steps) or a lower lr_find.max_lr" in few.reason


def test_a_loss_lowest_at_the_start_asks_for_lower_rates_without_fastais_rule():
    """The loss rose from the first usable point (every usable rate too high): it advised raising
    max_lr or num_steps, and printed fastai's rule read off that first point."""
    lrs = lr_sequence(1e-6, 1.0, 30, "exponential")
    rising = suggest(lrs, [1.0 + 0.1 * k for k in range(30)], begin=3)
    assert rising.lr is None and rising.min_loss_step == 3 and rising.min_loss_lr == pytest.approx(lrs[3])
    assert rising.min_loss_lr_div10 is None
    assert rising.reason.startswith(f"the smoothed loss was lowest at the start of the usable range (lr {lrs[3]:.1e}, "
                                    f"after the first 3 steps left out) and rose from there")
    assert rising.reason.endswith("Run again with lower rates: a lower lr_find.min_lr and lr_find.max_lr")
    assert "raise" not in rising.reason
    # lr_find.mode=linear lr_find.num_steps=30 (model=mlp): every usable rate is >= 0.1
    linear = lr_sequence(1e-7, 1.0, 30, "linear")
    flat_then_up = suggest(linear, [2.3 + 0.05 * k for k in range(30)], begin=3, mode="linear")
    assert linear[3] == pytest.approx(0.1034, rel=1e-3) and "lr_find.mode=exponential" in flat_then_up.reason
    record = flat_then_up.as_record()
    assert record["suggested_lr"] is None and record["min_loss_lr_div10"] is None


def test_the_summary_says_why_and_prints_no_fastai_rule_where_the_loss_never_fell(tmp_path, data_dir, capsys):
    from litlab.tuning.lr_files import write_results
    from litlab.tuning.lr_range import RangeResult

    run_dir = tmp_path / "run"
    cfg = make_cfg(["logger=none"], run_dir, data_dir, config_name="lr_find")
    lrs = lr_sequence(1e-7, 1.0, 30, "exponential")
    losses = [2.0 + 0.02 * k for k in range(30)]
    result = RangeResult(lrs=lrs, losses=losses, smoothed=smooth(losses, 0.05))
    suggestion = suggest(result.lrs, result.smoothed, begin=3)
    facts = {"steps_run": 30, "stop_reason": None, "settings": {"num_steps": 30}, "wall_time_s": 1.0,
             **suggestion.as_record()}
    write_results(cfg, run_dir, result, suggestion, facts)
    out = capsys.readouterr().out
    assert "fastai's rule" not in out and "never fell" not in out
    assert re.search(r"no learning rate suggested: the smoothed loss was lowest at the start of the usable range "
                     r"\(lr 5\.3e-07, after the first 3 steps left out\).*a lower lr_find.min_lr and lr_find.max_lr\. "
                     r"Look at .*lr_find\.png\.", out)


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
    # the sweep's optimizer ended at a rate of its own; the task's, built again, has the configured one
    assert {g["lr"] for g in model.trainer.optimizers[0].param_groups} != {3e-3}
    optimizer = model.configure_optimizers()
    assert [float(g["lr"]) for g in optimizer.param_groups] == [3e-3] * len(optimizer.param_groups)


def test_a_nan_loss_at_the_first_step_is_a_user_error():
    from omegaconf import OmegaConf

    from litlab.tuning.lr_range import RangeResult, check_first_step
    from litlab.tuning.lr_settings import range_settings

    settings = range_settings(OmegaConf.create({"lr_find": {}}))  # every value conf/lr_find.yaml's
    with pytest.raises(LitlabError, match=r"training loss was nan at the first step, at lr_find.min_lr=1e-07.*"
                                          r"trainer.precision=32"):
        check_first_step(RangeResult(lrs=[1e-7], losses=[float("nan")]), settings, {"precision": 32})


def test_the_defaults_are_those_of_conf_lr_find_yaml_alone():
    from omegaconf import OmegaConf

    from litlab.config_flags import CONF_DIR
    from litlab.tuning.lr_settings import RangeSettings, range_settings

    written = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "lr_find.yaml").lr_find)
    assert range_settings(OmegaConf.create({"lr_find": {"num_steps": 30}})) == RangeSettings(**{**written,
                                                                                                "num_steps": 30})


def test_a_ddp_trainer_runs_in_one_process_with_the_same_samples_per_step(tmp_path, data_dir):
    from litlab.tuning.lr_range import range_trainer_config

    cfg = make_cfg([*TINY, "trainer=ddp_cpu", "+trainer.accumulate_grad_batches=3"], tmp_path / "run", data_dir,
                   config_name="lr_find")
    node, note = range_trainer_config(cfg.trainer, 50)
    assert (node.devices, node.num_nodes, node.strategy, node.accumulate_grad_batches) == (1, 1, "auto", 6)
    assert (node.max_steps, node.max_epochs, node.limit_val_batches) == (50, -1, 0)
    assert "2 process(es)" in note and "accumulating 6 batches per optimizer step instead of 3" in note
    # two nodes of 2 processes: counted, not refused for want of a launcher (a range test never has one)
    cfg = make_cfg([*TINY, "trainer=ddp_cpu", "trainer.num_nodes=2"], tmp_path / "run", data_dir,
                   config_name="lr_find")
    node, note = range_trainer_config(cfg.trainer, 50)
    assert (node.num_nodes, node.accumulate_grad_batches) == (1, 4) and "4 process(es)" in note


@pytest.mark.parametrize("override, message", [
    # read as 3 processes (the string's length), and printed in the command to train with
    ("trainer.devices=abc", r"trainer.devices must be an integer, a list of device ids or auto, got 'abc'"),
    ("trainer.num_nodes=0", r"trainer.num_nodes must be an integer >= 1, got 0"),
    ("+trainer.accumulate_grad_batches=0", r"trainer.accumulate_grad_batches must be an integer >= 1, got 0"),
])
def test_trainer_values_train_refuses_are_refused_before_the_trainer_is_rewritten(override, message, tmp_path,
                                                                                   data_dir):
    from litlab.tuning.lr_range import range_trainer_config

    cfg = make_cfg([*TINY, "trainer=ddp_cpu", override], tmp_path / "run", data_dir, config_name="lr_find")
    with pytest.raises(LitlabError, match=message):
        range_trainer_config(cfg.trainer, 50)


# ---- the files ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory, data_dir):
    """lr_find(cfg) in-process up to lr 1e4, which diverges before the last step; with choices the
    range test leaves out (weight averaging, compression, early stopping), and a DDP trainer. Its
    start line (the log) and printed summary are kept."""
    import contextlib
    import io
    import logging

    from litlab.tuning.lr_range import lr_find

    run_dir = tmp_path_factory.mktemp("lrf_files") / "run"
    cfg = make_cfg([*TINY, "lr_find.num_steps=60", "lr_find.min_lr=1e-4", "lr_find.max_lr=1e4", "averaging=ema",
                    "compress=prune", "callbacks=early_stopping", "trainer=ddp_cpu"], run_dir, data_dir,
                   config_name="lr_find")
    logger, lines = logging.getLogger("litlab.tuning.lr_range"), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level, out = logger.level, io.StringIO()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out):
            record = lr_find(cfg)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return SimpleNamespace(run_dir=run_dir, record=record, log=lines, out=out.getvalue())


def test_a_diverging_sweep_stops_early_and_writes_its_curve(diverged_run):
    run_dir, record = diverged_run.run_dir, diverged_run.record
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


def test_what_the_config_chose_and_the_test_left_out_is_named_alike_everywhere(diverged_run):
    """metrics.json's not_used named model.scheduler only (averaging=ema and compress=prune not at
    all), while the start line named weight averaging, compression and export whether chosen or not;
    the summary lacked the one-process (DDP) note."""
    chosen = ["model.scheduler", "averaging=ema", "compress=prune", "callbacks.early_stopping"]
    record = json.loads((diverged_run.run_dir / "metrics.json").read_text())
    assert record["not_used"] == chosen
    start = next(line for line in diverged_run.log if line.startswith("lr_find: 60 steps"))
    assert start.endswith(f"Not used: {', '.join(chosen)}") and "export" not in start
    assert f"  not used               {', '.join(chosen)} (the range test only trains" in diverged_run.out
    note = ("the trainer trains in 2 process(es) (data.batch_size each); the range test runs in one, accumulating 2 "
            "batches per optimizer step instead of 1")
    assert record["one_process"].startswith(note) and record["accumulate_grad_batches"] == 2
    assert f"  one process            {note}" in diverged_run.out
    # the count of steps and the stop agree: "steps 23 of 60 (stopped: ... after 23 steps)"
    assert re.search(rf"  steps +{record['steps_run']} of 60 \(stopped: .* after {record['steps_run']} steps\)",
                     diverged_run.out)


def test_a_divergence_at_the_last_step_stopped_nothing(tmp_path):
    """"steps 100 of 100 (stopped: ... at step 99)": every step ran, yet it said stopped."""
    from litlab.tuning.lr_files import summary_lines

    reason = "the smoothed loss 9.3 exceeded 4 x the best 2.1 after 100 steps"
    facts = {"steps_run": 100, "settings": {"num_steps": 100}, "stop_reason": reason, "stopped_early": False,
             "wall_time_s": 1.0}
    lines = summary_lines(tmp_path, facts, suggest(lr_sequence(1e-7, 1.0, 100), [1.0] * 100, begin=10), False)
    assert lines[1] == f"  steps                  100 of 100 (the last one diverged: {reason})"


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
    shutil.copytree(diverged_run.run_dir, runs / "lr_find_run")
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
    # the key is not in conf/trainer/gpu.yaml: without the + Hydra refused the advised override
    ("trainer=fsdp", r"trainer.strategy=fsdp: the range test runs in one process.* trainer=gpu .*; "
                     r"\+trainer.accumulate_grad_batches=N \(a key"),
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


def test_an_optimizer_whose_step_needs_a_closure_is_refused_whatever_its_class():
    """Only L-BFGS (and its subclasses) was refused, though the docstring promised a user's own."""
    from functools import partial

    from litlab.tuning.lr_range import check_closure_free

    class LineSearch(torch.optim.Optimizer):  # a user's own: evaluates the loss itself
        def step(self, closure):
            return closure()

    with pytest.raises(LitlabError, match=r"model.optimizer: LineSearch takes several loss evaluations per step"):
        check_closure_free(SimpleNamespace(optimizer_factory=partial(LineSearch, lr=0.1)))
    check_closure_free(SimpleNamespace(optimizer_factory=partial(torch.optim.SGD, lr=0.1)))  # closure=None: fine


def test_a_training_folder_that_holds_a_range_test_says_so(tmp_path):
    """train hydra.run.dir=<an lr_find folder> said "It stopped before its first checkpoint, so it
    cannot be resumed ... or delete it", of a completed range test."""
    from litlab.config_check import check_overrides

    run = tmp_path / "lrf"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "task": "lr_find"}))
    said = (r"already holds a run\. It holds the results of python -m litlab\.lr_find \(its metrics\.json says task: "
            r"lr_find\), not a training run, so there is nothing to resume there: choose a new folder")
    with pytest.raises(LitlabError, match=said) as refused:
        check_overrides([f"hydra.run.dir={run}"], "train")
    assert "first checkpoint" not in str(refused.value) and "delete" not in str(refused.value)
    # a training run whose early failure recorded a task_name of the user's own is still one
    (run / "metrics.json").write_text(json.dumps({"status": "failed", "task": "myexp"}))
    with pytest.raises(LitlabError, match=r"It stopped before its first checkpoint"):
        check_overrides([f"hydra.run.dir={run}"], "train")


def test_the_training_command_keeps_the_config_search_path(tmp_path, data_dir, capsys):
    """With hydra.searchpath (a user's own conf/model/mymlp.yaml) the printed command left it out,
    and failed: "model=mymlp is not a choice"."""
    import shlex

    from litlab.tuning.lr_files import write_results
    from litlab.tuning.lr_range import RangeResult

    own = tmp_path / "myconf"
    (own / "model").mkdir(parents=True)
    (own / "model" / "mymlp.yaml").write_text("defaults:\n  - mlp\n  - _self_\nnet:\n  hidden_sizes: [16]\n")
    run_dir = tmp_path / "run"
    cfg = make_cfg(["logger=none", "model=mymlp", f"hydra.searchpath=[file://{own}]", "lr_find.num_steps=30",
                    "model.optimizer.lr=0.1"], run_dir, data_dir, config_name="lr_find")
    lrs = lr_sequence(1e-6, 1.0, 30)
    losses = [2.0 - math.tanh(k / 5 - 3) for k in range(30)]  # falls fastest in the middle
    result = RangeResult(lrs=lrs, losses=losses, smoothed=smooth(losses, 0.05))
    suggestion = suggest(result.lrs, result.smoothed, begin=3)
    facts = {"steps_run": 30, "stop_reason": None, "settings": {"num_steps": 30}, "wall_time_s": 1.0}
    write_results(cfg, run_dir, result, suggestion, facts)
    command = re.search(r"train with: (.*)", capsys.readouterr().out).group(1)
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "litlab.train"]
    assert f"hydra.searchpath=[file://{own}]" in words and "model=mymlp" in words
    assert words.count(f"model.optimizer.lr={suggestion.lr:.1e}") == 1 and "model.optimizer.lr=0.1" not in words
    assert not any(w.startswith(("lr_find", "--config-name")) for w in words)
    # the command composes: train's config with the user's model
    trained = make_cfg(words[3:], tmp_path / "train", data_dir, fast=False)
    assert trained.model.net.hidden_sizes == [16] and trained.model.optimizer.lr == pytest.approx(suggestion.lr,
                                                                                                  rel=0.05)

def test_the_range_test_trains_on_the_runs_mixed_loss_and_records_the_mixer(tmp_path, data_dir):
    """lr_find builds the task with mixing=... as training does; its metrics.json did not say so."""
    from litlab.tuning.lr_range import lr_find

    run_dir = tmp_path / "run"
    cfg = make_cfg([*TINY, "mixing=mixup", "lr_find.num_steps=20", "logger=none"], run_dir, data_dir,
                   config_name="lr_find")
    record = lr_find(cfg)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert record["mixing"] == on_disk["mixing"] == "mixup(alpha=0.2)"
    assert record["steps_run"] == 20 and "mixing=mixup" not in record["not_used"]


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


def test_a_profiler_the_config_names_times_the_range_test(tmp_path, data_dir):
    """+trainer.profiler=simple was replaced by litlab's no-op profiler and printed nothing; as in
    training, the no-op one is used only where the config names none. The report counts one
    training batch per step of the sweep."""
    import logging

    from litlab.tuning.lr_range import lr_find

    cfg = make_cfg([*TINY, "lr_find.num_steps=20", "lr_find.stop_factor=null", "logger=none",
                    "+trainer.profiler=simple"], tmp_path / "run", data_dir, config_name="lr_find")
    logger, lines = logging.getLogger("lightning.pytorch.profilers"), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        record = lr_find(cfg)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    report = "\n".join(lines)
    assert "FIT Profiler Report" in report, report[-2000:]
    row = re.search(r"\|\s*run_training_batch\s*\|\s*\S+\s*\|\s*(\d+)\s*\|", report)
    assert row is not None, report[-2000:]
    assert int(row.group(1)) == record["steps_run"] == 20
