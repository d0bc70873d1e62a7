"""litlab's TensorBoard event file: TensorBoard reads it, it is buffered, and it never overwrites."""

from __future__ import annotations

import threading
from unittest import mock

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.compat.proto.summary_pb2 import Summary

from litlab.tensorboard_events import EventFile, SummaryWriter
from litlab.tensorboard_logger import TensorBoardLogger


def _scalars(folder, tag):
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _records(path):
    return list(LegacyEventFileLoader(str(path)).Load())


def test_tensorboard_reads_scalars_images_and_text(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path), flush_secs=3600)
    for step in range(3):
        writer.add_scalar("a/loss", 1.0 / (step + 1), step)
    writer.add_text("notes", "hello", 0)
    writer.add_histogram("w", np.array([1.0, 2.0, 3.0]), 0)
    writer.add_image("img", np.zeros((3, 4, 5), dtype=np.uint8), 0)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "histograms": 0, "scalars": 0, "images": 0})
    acc.Reload()
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("a/loss")] == [(0, 1.0), (1, 0.5), (2, 0.333333)]
    assert acc.Tags()["histograms"] == ["w"]
    assert acc.Tags()["images"] == ["img"] and (acc.Images("img")[0].width, acc.Images("img")[0].height) == (5, 4)
    assert "notes/text_summary" in acc.Tags()["tensors"]


def test_events_wait_in_memory_until_flush(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    events = EventFile(str(tmp_path), flush_secs=3600)
    summary = Summary(value=[Summary.Value(tag="x", simple_value=1.0)])
    for step in range(5):
        events.add_event(Event(step=step, wall_time=1.0, summary=summary))
    on_disk = _records(events.path)
    assert [r.file_version for r in on_disk] == ["brain.Event:2"]  # only the header so far
    events.flush()
    assert [r.step for r in _records(events.path)[1:]] == [0, 1, 2, 3, 4]
    events.close()


def test_events_go_out_once_flush_secs_have_passed(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    clock = [100.0]
    with mock.patch("litlab.tensorboard_events.time.monotonic", side_effect=lambda: clock[0]):
        events = EventFile(str(tmp_path), flush_secs=5)
        events.add_event(Event(step=1, wall_time=1.0))
        assert len(_records(events.path)) == 1
        clock[0] += 5.0
        events.add_event(Event(step=2, wall_time=1.0))  # 5 s after the last write: both go out
        assert [r.step for r in _records(events.path)[1:]] == [1, 2]
    events.close()


def test_no_writer_thread_and_a_new_file_per_writer(tmp_path):
    before = set(threading.enumerate())
    first = SummaryWriter(log_dir=str(tmp_path))
    second = SummaryWriter(log_dir=str(tmp_path))
    assert set(threading.enumerate()) == before
    first.add_scalar("x", 1.0, 0)
    second.add_scalar("x", 2.0, 1)
    first.close()
    second.close()
    paths = sorted(p for p in tmp_path.iterdir())
    assert len(paths) == 2 and all(".tfevents." in p.name for p in paths)
    assert sorted(_scalars(tmp_path, "x")) == [(0, 1.0), (1, 2.0)]


def test_an_existing_file_is_never_overwritten(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    # the same second and the same file number: the same name
    with mock.patch("litlab.tensorboard_events.time.time", return_value=1.0e9), \
         mock.patch("litlab.tensorboard_events._FILE_NUMBERS", iter([7, 7])):
        events = EventFile(str(tmp_path))
        events.add_event(Event(step=3))
        events.close()
        before = open(events.path, "rb").read()
        with pytest.raises(FileExistsError):
            EventFile(str(tmp_path))
    assert open(events.path, "rb").read() == before
    assert [r.step for r in _records(events.path)[1:]] == [3]


def test_closed_file_refuses_events_and_reopen_starts_a_new_one(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    events = EventFile(str(tmp_path))
    first = events.path
    events.close()
    with pytest.raises(ValueError, match="closed"):
        events.add_event(Event(step=1))
    events.reopen()
    events.add_event(Event(step=1))
    events.close()
    assert events.path != first
    assert [r.step for r in _records(events.path)[1:]] == [1]


def test_resumed_logger_hides_events_from_the_resume_step_on(tmp_path):
    first = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    for step in range(10):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("failed")
    resumed = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    resumed.continue_from_step(6)
    for step in range(6, 9):
        resumed.log_metrics({"loss": 100.0 + step}, step=step)
    resumed.finalize("success")
    # steps 6-9 of the first run are dropped from its file; the resumed run's 6-8 replace them
    assert _scalars(tmp_path / "tb", "loss") == [(s, float(s)) for s in range(6)] + [(s, 100.0 + s) for s in range(6, 9)]


def test_logger_uses_litlab_writer_with_its_flush_interval(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", flush_every_s=7)
    writer = logger.experiment
    assert isinstance(writer, SummaryWriter)
    event_file = writer._get_file_writer().event_writer
    assert isinstance(event_file, EventFile) and event_file._flush_secs == 7.0
    logger.finalize("success")


def test_events_left_in_memory_reach_the_disk_at_exit(tmp_path):
    import subprocess
    import sys

    code = ("from litlab.tensorboard_events import SummaryWriter\n"
            f"w = SummaryWriter(log_dir={str(tmp_path)!r}, flush_secs=3600)\n"
            "for s in range(4):\n    w.add_scalar('x', float(s), s)\n")  # no close, no flush
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _scalars(tmp_path, "x") == [(s, float(s)) for s in range(4)]


def test_final_hparams_are_on_disk_without_another_flush(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", flush_every_s=3600)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    logger.log_hyperparams({"lr": 0.1}, metrics={"hparams/test/acc": 0.75})  # after the run's end
    assert _scalars(tmp_path / "tb", "hparams/test/acc") == [(0, 0.75)]
    assert logger.experiment.file_writer is None  # and the file opened for them is closed again


def test_records_larger_than_the_buffer_and_many_small_ones_arrive_whole(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    from litlab.tensorboard_events import _BUFFER_BYTES

    events = EventFile(str(tmp_path), flush_secs=3600)
    big = Summary(value=[Summary.Value(tag="img", image=Summary.Image(encoded_image_string=b"x" * (3 * _BUFFER_BYTES)))])
    for step in range(3000):  # several buffers' worth of small records, one large record in the middle
        events.add_event(Event(step=step, summary=big if step == 1500 else Summary(
            value=[Summary.Value(tag="x", simple_value=float(step))])))
    events.close()
    records = _records(events.path)[1:]
    assert [r.step for r in records] == list(range(3000))
    assert len(records[1500].summary.value[0].image.encoded_image_string) == 3 * _BUFFER_BYTES


def test_a_full_disk_is_one_clear_error_naming_the_file(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event

    from litlab.errors import LitlabError

    events = EventFile(str(tmp_path), flush_secs=0)
    header = open(events.path, "rb").read()

    def full(*_):
        raise OSError(28, "No space left on device")

    events._file.flush = full
    with pytest.raises(LitlabError, match="No space left on device") as e:
        events.add_event(Event(step=1))
    assert events.path in str(e.value) and "logger=csv" in str(e.value)
    assert open(events.path, "rb").read() == header  # what was written before is still there


def test_a_resumed_run_shows_one_hparams_session_with_its_own_settings(tmp_path):
    """The final hparams (settings and metrics) are a file of their own that the next run in the
    folder replaces: after a resume TensorBoard showed both runs' hparams/* points at step 0 and
    the first run's settings (it keeps the first session record it reads)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    for epochs, acc in ((3, 0.5), (5, 0.75)):  # a run, then its resume in the same folder
        logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
        logger.log_metrics({"val/acc": acc}, step=epochs * 10)
        logger.finalize("success")
        logger.log_hyperparams({"trainer": {"max_epochs": epochs}}, metrics={"hparams/val/acc": acc})
    assert len(list((tmp_path / "tb").glob("*.hparams"))) == 1
    assert _scalars(tmp_path / "tb", "hparams/val/acc") == [(0, 0.75)]
    assert _scalars(tmp_path / "tb", "val/acc") == [(30, 0.5), (50, 0.75)]  # the curves are all kept
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    start = HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["trainer/max_epochs"].number_value == 5
