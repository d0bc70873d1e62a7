"""One tiny TensorBoard run shared by the callback tests (training once keeps them fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litlab.training import train
from tests.conftest import made_once, make_cfg

# keep every image, text and histogram event, not a sample of them
EVERYTHING = {"images": 0, "tensors": 0, "histograms": 0, "scalars": 0}


def read_events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance=EVERYTHING)
    events.Reload()
    return events


@pytest.fixture(scope="session")
def tensorboard_run(tmp_path_factory, data_dir):
    """Digits, CNN, 2 epochs, TensorBoard with histograms, validation figures every epoch.

    Returns ``(run_dir, metrics, events)``. Trained once for the session, also when ``pytest -n N``
    sends the tests that read it to several workers.
    """

    def make(folder: Path) -> None:
        cfg = make_cfg(["logger=tensorboard", "logger.histograms=true", "callbacks.eval_report.every_n_epochs=1"],
                       folder / "run", data_dir)
        train(cfg)

    run_dir = made_once(tmp_path_factory, "tb", make) / "run"
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), read_events(run_dir)
