"""Habits of a user coming from lightning-hydra-template: tags, a schedule of their own over
_classifier, Lightning's checkpoint arguments, the summary after compression, export and test=false."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import pytest
from omegaconf import OmegaConf, open_dict

from litlab.errors import LitlabError
from tests.conftest import make_cfg, refused_before_torch, run_cli

SEQ = ["data=synthetic_seq", "data.shape=[8,3]", "data.num_classes=3", "data.num_train=96", "data.num_val=32",
       "data.num_test=32", "model=lstm", "model.net.hidden_size=8", "trainer.max_epochs=1",
       "callbacks.progress_bar=null", "compress.measure.warmup=1", "compress.measure.repeats=2"]


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory):
    """One short run through the entry point: tags, a quantized LSTM exported to ONNX, training
    limited to 3 batches, no test. Returns (run folder, metrics.json, printed summary, log lines)."""
    from litlab.entry import run_entrypoint
    from litlab.training import train

    root = tmp_path_factory.mktemp("quantized")
    run_dir = root / "run"
    cfg = make_cfg([*SEQ, "tags=[dev,mine]", "seed=7", "logger=tensorboard", "compress=quantize", "export=onnx",
                    "test=false", "+trainer.limit_train_batches=3"], run_dir, root / "data")
    (run_dir / ".hydra").mkdir(parents=True)  # Hydra's record of the run, as the command line writes it
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.masked_copy(
        cfg, [k for k in cfg if k != "hydra"])))
    handler = _Lines()
    logging.getLogger("litlab").addHandler(handler)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            run_entrypoint(train, cfg)
    finally:
        logging.getLogger("litlab").removeHandler(handler)
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), out.getvalue(), handler.lines


def test_tags_and_seed_are_in_the_record_and_the_hparams_tab(quantized_run):
    run_dir, metrics, _, _ = quantized_run
    assert metrics["tags"] == ["dev", "mine"] and metrics["seed"] == 7
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(run_dir / "tensorboard"))  # the HPARAMS tab's session
    events.Reload()
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["tags"].string_value == "dev,mine"
    assert start.session_start_info.hparams["seed"].number_value == 7


def test_every_start_record_begins_with_them(tmp_path, cfg_factory):
    from litlab.reporting.run_files import labels_of, start_metrics

    assert labels_of(cfg_factory(["tags=[a]", "seed=3"])) == {"seed": 3, "tags": ["a"]}
    record = start_metrics(tmp_path, status="running", task="train", **labels_of(cfg_factory([])))
    assert record["tags"] == [] and record["seed"] == cfg_factory([]).seed  # the defaults


def test_hparams_of_a_run_without_tags(cfg_factory):
    from litlab.reporting.hparams import hparams_of

    assert hparams_of(cfg_factory([]))["tags"] == ""


def test_the_onnx_fallback_says_what_was_exported_and_the_summary_shows_both(quantized_run):
    _, metrics, summary, lines = quantized_run
    assert metrics["export/model"] == "float"
    warning = [ln for ln in lines if ln.startswith("export=onnx cannot hold")]
    assert len(warning) == 1
    assert "so the float model was exported instead (metrics.json export/model: float)" in warning[0]
    assert "export=torchscript exports that model itself" in warning[0]
    compressed = next(ln for ln in summary.splitlines() if ln.strip().startswith("compressed (quantize)"))
    assert f"test/acc {metrics['compress/after/test_acc']:.4f}" in compressed
    assert f"size x{metrics['compress/size_ratio']:.2f}" in compressed and metrics["compress/artifact"] in compressed
    export = next(ln for ln in summary.splitlines() if ln.strip().startswith("export "))
    assert export.split()[1] == metrics["export/path"]
    assert "(float model: export=onnx cannot hold the compressed one; export=torchscript holds it)" in export


def test_test_false_with_compression_and_partial_data_names_the_partial_figures(quantized_run):
    _, metrics, summary, _ = quantized_run
    # compression scored best.ckpt on the test split: not "skipped"
    assert "test skipped" not in summary
    assert (f"test=false: the test split was scored by compression only (best.ckpt's test/acc "
            f"{metrics['compress/before/test_acc']:.4f}, compress/before/test_acc)") in summary
    # val/acc covers the whole validation split; no test/ figures to speak of
    assert "trainer.limit_train_batches=3 (training used those batches only; val/* cover the whole split)" in summary


def test_partial_figures_of_each_limit():
    from litlab.reporting.summary import partial_figures

    assert partial_figures({"limit_val_batches": 2}) == "val/* cover those batches only; test/* cover the whole split"
    assert partial_figures({"limit_train_batches": 5, "limit_val_batches": 2, "limit_test_batches": 2}) == (
        "training used those batches only; val/* and test/* cover those batches only")
    assert partial_figures({"limit_train_batches": 3}) == (
        "training used those batches only; val/* and test/* cover the whole splits")
    assert partial_figures({"fast_dev_run": True}) == "the figures cover those batches only"


def test_no_test_line_where_the_test_ran_or_the_config_asked_for_it(tmp_path):
    from litlab.reporting.summary import format_summary

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("test: true\n")
    # trainer.limit_test_batches=0: no test/ figures, but test=false was not the reason
    assert "test skipped" not in format_summary(tmp_path, {"best_ckpt": "/x/best.ckpt"}, False)
    (tmp_path / ".hydra" / "config.yaml").write_text("test: false\n")
    assert "test skipped" in format_summary(tmp_path, {"best_ckpt": "/x/best.ckpt"}, False)
    assert "test skipped" not in format_summary(tmp_path, {"best_ckpt": "/x/best.ckpt", "status": "interrupted"}, False)


def _plateau(overrides=(), tmp_path=None, data_dir=None):
    """The config a model file ``{defaults: [_classifier, _self_], scheduler: {_target_: ...ReduceLROnPlateau,
    _partial_: true, mode: min}}`` composes to: _classifier's T_max stays under the new target."""
    cfg = make_cfg(list(overrides), tmp_path / "run", data_dir)
    with open_dict(cfg):
        cfg.model.scheduler._target_ = "torch.optim.lr_scheduler.ReduceLROnPlateau"
        cfg.model.scheduler.mode = "min"
    return cfg


def test_an_inherited_t_max_is_left_out_for_a_schedule_without_it(tmp_path, data_dir, caplog):
    from litlab.build import check_task_settings

    cfg = _plateau(tmp_path=tmp_path, data_dir=data_dir)
    assert OmegaConf.to_container(cfg.model.scheduler, resolve=False)["T_max"] == "${trainer.max_epochs}"
    with caplog.at_level("INFO"):
        check_task_settings(cfg.model)
    assert "T_max" not in cfg.model.scheduler and cfg.model.scheduler.mode == "min"
    assert "takes no T_max; the T_max inherited from conf/model/_classifier.yaml is left out" in caplog.text


def test_a_t_max_set_for_a_schedule_without_it_is_refused_naming_where_it_comes_from(tmp_path, data_dir):
    from litlab.build import check_task_settings

    cfg = _plateau(["model.scheduler.T_max=5"], tmp_path=tmp_path, data_dir=data_dir)
    with pytest.raises(LitlabError) as e:
        check_task_settings(cfg.model)
    assert str(e.value).startswith("model.scheduler.T_max=5: torch.optim.lr_scheduler.ReduceLROnPlateau takes no T_max")
    assert "conf/model/_classifier.yaml" in str(e.value) and "~model.scheduler.T_max" in str(e.value)


def test_a_cosine_t_max_stays(tmp_path, data_dir):
    from litlab.build import check_task_settings

    cfg = make_cfg([], tmp_path / "run", data_dir)
    check_task_settings(cfg.model)
    assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs


@pytest.mark.parametrize("key", ["save_top_k", "every_n_epochs"])
def test_lightning_checkpoint_arguments_say_what_litlab_keeps(tmp_path, key):
    err = refused_before_torch("litlab.train", [f"+callbacks.model_checkpoint.{key}=3"], cwd=tmp_path)
    assert "litlab keeps two checkpoints: checkpoints/best.ckpt" in err and "checkpoints/last.ckpt" in err
    assert "Did you mean" not in err and "+callbacks.top_k={_target_:lightning.pytorch.callbacks.ModelCheckpoint" in err


def test_known_warnings_are_quiet_within_the_job_only(cfg_factory):
    from litlab.known_warnings import known_warnings_quiet

    broadcast = ("`broadcast_buffers` is deprecated. Use `forward_sync_buffers` instead. IMPORTANT: unlike "
                 "`broadcast_buffers=False`, ...")
    cfg = cfg_factory(["trainer=ddp_cpu", "trainer.precision=bf16-mixed"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with known_warnings_quiet(cfg):
            warnings.warn(broadcast, FutureWarning)
            warnings.warn("Precision bf16-mixed is not supported by the model summary.  Estimated ...", UserWarning)
            warnings.warn("Precision bf16-true is not supported by the model summary.", UserWarning)
            warnings.warn("something else is deprecated", FutureWarning)
        warnings.warn(broadcast, FutureWarning)  # after the job
    assert [str(w.message)[:40] for w in seen] == ["Precision bf16-true is not supported by ",
                                                   "something else is deprecated", broadcast[:40]]
    with warnings.catch_warnings(record=True) as seen:  # broadcast_buffers: true, as a user may set it
        warnings.simplefilter("always")
        with known_warnings_quiet(cfg_factory(["trainer=ddp_cpu", "trainer.strategy.broadcast_buffers=true"])):
            warnings.warn(broadcast, FutureWarning)
    assert len(seen) == 1


@pytest.mark.slow
def test_a_ddp_cpu_bf16_run_prints_none_of_the_known_warnings(tmp_path):
    """broadcast_buffers' deprecation (once per rank), the model summary's under bf16-mixed, and the
    all_gather deprecation of the test's gather of the worst samples (once per rank)."""
    done = run_cli("litlab.train", "trainer=ddp_cpu", "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                   "data=synthetic", "data.shape=[1,8,8]", "data.num_classes=3", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, env={"PYTHONWARNINGS": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "test/acc" in out  # the test ran, and with it the gather
    for message in ("`broadcast_buffers` is deprecated", "is not supported by the model summary",
                    "functional.all_gather is deprecated"):
        assert message not in out


@pytest.mark.parametrize(("typed", "record", "tab"), [("tags=5", ["5"], "5"), ("tags=dev", ["dev"], "dev"),
                                                      ("tags=[dev,7]", ["dev", "7"], "dev,7")])
def test_tags_typed_as_one_value_are_one_tag_in_the_record_and_the_tab(cfg_factory, typed, record, tab):
    """tags=5 crashed the run before any record ('int' object is not iterable); tags=dev showed d,e,v."""
    from litlab.reporting.hparams import hparams_of
    from litlab.reporting.run_files import labels_of

    cfg = cfg_factory([typed])
    assert labels_of(cfg)["tags"] == record and hparams_of(cfg)["tags"] == tab


def _scheduler_module(tmp_path, monkeypatch) -> None:
    """A scheduler module of the user's own, whose source litlab does not read (not torch's, not litlab's)."""
    (tmp_path / "fh_user_sched.py").write_text(
        "import torch\n\n\n"
        "def warmup_then_flat(optimizer, warmup=1):\n"
        "    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: min(1.0, (e + 1) / warmup))\n\n\n"
        "def cosine_of_its_own(optimizer, T_max):\n"
        "    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=T_max)\n\n\n"
        "def passes_on(optimizer, **kwargs):\n"
        "    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **kwargs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_inherited_t_max_is_left_out_for_a_scheduler_function_of_the_users_own(tmp_path, data_dir, monkeypatch):
    from litlab.build import check_task_settings

    _scheduler_module(tmp_path, monkeypatch)
    cfg = make_cfg(["model.scheduler._target_=fh_user_sched.warmup_then_flat"], tmp_path / "run", data_dir)
    check_task_settings(cfg.model)  # built a stand-in schedule: "unexpected keyword argument 'T_max'" before
    assert "T_max" not in cfg.model.scheduler
    for target in ("cosine_of_its_own", "passes_on"):  # a T_max parameter, or **kwargs: kept
        cfg = make_cfg([f"model.scheduler._target_=fh_user_sched.{target}"], tmp_path / "run", data_dir)
        check_task_settings(cfg.model)
        assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs


def test_save_top_k_without_plus_says_what_litlab_keeps(tmp_path):
    """The template's own habit is the plain form: it was answered "Did you mean ...save_last?"."""
    err = refused_before_torch("litlab.train", ["callbacks.model_checkpoint.save_top_k=3"], cwd=tmp_path)
    assert "callbacks.model_checkpoint.save_top_k is not a key of the config" in err
    assert "litlab keeps two checkpoints: checkpoints/best.ckpt" in err and "Did you mean" not in err


def test_test_false_with_compression_says_the_test_split_was_scored_by_it(tmp_path):
    from litlab.reporting.summary import format_summary

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("test: false\n")
    text = format_summary(tmp_path, {"best_ckpt": "/x/best.ckpt", "compress/method": "prune",
                                     "compress/before/test_acc": 0.8125}, False)
    assert "test skipped" not in text
    assert "test=false: the test split was scored by compression only (best.ckpt's test/acc 0.8125" in text
