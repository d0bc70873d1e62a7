"""DDP over two CPU processes through the real entrypoint, against one process on the same data."""

import pytest
import yaml

from tests.conftest import make_cfg, run_cli

from .tiny_run import TINY, metrics_of, run_dirs
from .weight_digest import digest_override, read_digests

# a model that does not change (lr 0, no dropout) sees the same samples split or not; 63 validation
# and test samples: one rank of two gets one fewer
FROZEN = ("model.optimizer.lr=0", "model.net.dropout=0", "logger=[csv,tensorboard]", "data.num_val=63",
          "data.num_test=63")


def _train(tmp_path, name, *extra):
    log_dir, digests = tmp_path / name, tmp_path / f"{name}_digest"
    proc = run_cli("litlab.train", *TINY, "trainer.max_epochs=2", f"paths.log_dir={log_dir}",
                   digest_override(digests), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return log_dir, read_digests(digests)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, data_dir):
    """``(log_dir, digests)`` of the one-process run that the DDP runs below are held against: the
    same overrides as ``_train``'s with ``trainer=cpu`` and ``FROZEN``. One process spans no
    processes, so it trains in this one (an interpreter start-up less), and once for the module:
    what the tests read of it (samples per epoch, batch size, steps, epoch figures) is the same for
    both."""
    from litlab.training import train

    tmp = tmp_path_factory.mktemp("one_process")
    log_dir, digests = tmp / "one", tmp / "one_digest"
    train(make_cfg([*TINY, "trainer.max_epochs=2", digest_override(digests), "trainer=cpu", *FROZEN],
                   log_dir / "run", data_dir, fast=False))
    return log_dir, read_digests(digests)


@pytest.mark.slow
def test_two_processes_share_the_epoch_and_one_run_dir(tmp_path, one_process):
    one_dir, one = one_process
    two_dir, two = _train(tmp_path, "two", "trainer=ddp_cpu", "trainer.devices=2", "compress=prune",
                          "compress.finetune.epochs=1", "compress.measure.warmup=1", "compress.measure.repeats=3",
                          "export=onnx")

    # the data is split, not repeated: two ranks of 128 samples = one process of 256, every epoch
    assert [d["samples_per_epoch"] for d in one] == [[256, 256]]
    assert [d["samples_per_epoch"] for d in two] == [[128, 128], [128, 128]]
    # one model: both ranks end with the same weights
    assert {d["world_size"] for d in two} == {2}
    assert two[0]["weights_sha256"] == two[1]["weights_sha256"]

    # exactly one run directory, written by rank 0 only
    (run_dir,) = run_dirs(two_dir)
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "completed"
    assert metrics["world_size"] == 2 and metrics["batch_size_per_device"] == 32
    assert metrics["effective_batch_size"] == 64
    assert metrics_of(run_dirs(one_dir)[0])["effective_batch_size"] == 32
    # half the optimizer steps per epoch, each on twice the samples
    assert metrics["global_step"] * 2 == metrics_of(run_dirs(one_dir)[0])["global_step"]
    assert metrics["test/acc"] > 0.5  # 10 classes: chance is 0.1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert "rank" not in "".join(p.name for p in run_dir.iterdir())
    # compression and export, on rank 0 after training, measure the whole test split, not rank 0's
    # shard: the trained model's figures there are the test's
    assert metrics["compress/before/test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert metrics["compress/before/test_loss"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    assert metrics["export/agreement"] >= 0.99


@pytest.mark.slow
def test_batchnorm_statistics_leave_rank_zero_as_the_per_step_broadcast_did(tmp_path):
    # litlab's DDP configs copy rank 0's buffers at each evaluation instead of before every step
    # both settings in one sweep (one interpreter start-up less); each job's ranks write their
    # digests into the job's own folder
    cnn = ("trainer=ddp_cpu", "trainer.devices=2", "model=cnn", "model.net.channels=[4,8]")
    proc = run_cli("litlab.train", "-m", *TINY, "trainer.max_epochs=2", f"paths.log_dir={tmp_path}",
                   "+callbacks.digest={_target_:tests.scale.weight_digest.WeightDigest,"
                   "out_dir:'${paths.output_dir}/digest'}", *cnn, "trainer.strategy.broadcast_buffers=false,true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    assert yaml.safe_load((sweep_dir / "1" / ".hydra" / "overrides.yaml").read_text())[-1] == (
        "trainer.strategy.broadcast_buffers=True")
    shared, per_step = read_digests(sweep_dir / "0" / "digest"), read_digests(sweep_dir / "1" / "digest")
    assert [d["rank"] for d in shared] == [d["rank"] for d in per_step] == [0, 1]
    # the ranks end with one model, running statistics included
    assert shared[0]["weights_sha256"] == shared[1]["weights_sha256"]
    # and it is the model that DDP's per-step broadcast gives rank 0 (which writes the checkpoints)
    assert shared[0]["weights_sha256"] == per_step[0]["weights_sha256"]


def _epoch_metrics(log_dir) -> dict:
    """The first epoch's training and validation loss and accuracy (CSV log) and the test ones."""
    import csv

    (run_dir,) = run_dirs(log_dir)
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    found = {}
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        found[key] = float(next(r for r in rows if r.get(key))[key])
    m = metrics_of(run_dir)
    return found | {"test/loss": m["test/loss"], "test/acc": m["test/acc"], "test/ece": m["test/ece"]}


@pytest.mark.slow
def test_epoch_metrics_average_over_every_rank(tmp_path, one_process):
    # a model that does not change (FROZEN) sees the same samples split or not: each epoch's loss
    # and accuracy must be the same on one and on two processes, not rank 0's alone
    # 63 validation and test samples: one rank gets one fewer, and no sample is counted twice
    one_dir, _ = one_process
    two_dir, _ = _train(tmp_path, "two", "trainer=ddp_cpu", "trainer.devices=2", *FROZEN)
    one, two = _epoch_metrics(one_dir), _epoch_metrics(two_dir)
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # so are the test report's figures: the confusion matrix, the calibration bins (test/ece above,
    # the reliability diagram) and the most confidently misclassified samples of all ranks together
    for tag in ("test/confusion_matrix", "test/reliability", "test/misclassified"):
        assert _image(two_dir, tag) == _image(one_dir, tag), tag


def _image(log_dir, tag: str) -> bytes:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = run_dirs(log_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events.Images(tag)[-1].encoded_image_string
