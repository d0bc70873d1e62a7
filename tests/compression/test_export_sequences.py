"""Exported sequence models take sequences of any length where the net reads any length.

The files held the training length in their input (ONNX ``['batch', 32, 4]``): onnxruntime refused a
sequence of another length ("Got invalid dimensions for input"). Each file is checked here at half,
once and twice the training length against the PyTorch model, and ``export/dynamic_axes`` says
which axes are free.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from litlab.compression.artifacts import trained_net
from litlab.compression.export import OnnxExport, TorchScriptExport
from litlab.data.preprocess import Normalize
from litlab.models.cnn import CNN
from litlab.models.mlp import MLP
from litlab.models.rnn import RNN
from litlab.training import train

STEPS, FEATURES, CLASSES = 8, 3, 4
LENGTHS = (STEPS // 2, STEPS, 2 * STEPS)
# what export_after_training asks of the exporters for (B, T, F) batches (dynamic_axes.requested)
SEQUENCE_AXES = {0: "batch", 1: "time"}


def sequence_model(net: nn.Module) -> nn.Module:
    """Raw sequences -> normalization -> ``net``, as ``with_normalization`` wraps it."""
    return nn.Sequential(Normalize("sequence", [0.5, -1.0, 2.0], [1.5, 0.5, 3.0]), net).eval()


def onnx_runner(path: Path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def torchscript_runner(path: Path):
    loaded = torch.jit.load(str(path))
    return lambda x: loaded(x)


def onnx_input_shape(path: Path) -> list:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def sequences(length: int, batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, length, FEATURES, generator=torch.Generator().manual_seed(length)) * 2 + 0.5


RNNS = {"gru": dict(cell="gru"), "lstm": dict(cell="lstm"),
        "lstm-2-layers-bidirectional": dict(cell="lstm", num_layers=2, bidirectional=True)}


@pytest.mark.parametrize("net_kwargs", RNNS.values(), ids=RNNS.keys())
def test_recurrent_files_run_at_half_once_and_twice_the_length_as_pytorch_does(tmp_path, net_kwargs):
    torch.manual_seed(0)
    model = sequence_model(RNN((STEPS, FEATURES), CLASSES, hidden_size=16, **net_kwargs))
    example = sequences(STEPS, batch=2)
    assert OnnxExport().write(model, example, tmp_path / "m.onnx", SEQUENCE_AXES)["dynamic_axes"] == ["batch", "time"]
    assert TorchScriptExport().write(model, example, tmp_path / "m.pt", SEQUENCE_AXES)["dynamic_axes"] == \
        ["batch", "time"]
    assert onnx_input_shape(tmp_path / "m.onnx") == ["batch", "time", FEATURES]
    run_onnx, run_ts = onnx_runner(tmp_path / "m.onnx"), torchscript_runner(tmp_path / "m.pt")
    for length in LENGTHS:
        x = sequences(length)
        with torch.no_grad():
            eager, scripted = model(x), run_ts(x)
        onnx_out = run_onnx(x)
        assert eager.shape == (5, CLASSES)
        torch.testing.assert_close(onnx_out, eager, atol=1e-4, rtol=1e-4, msg=f"onnx at {length} steps")
        torch.testing.assert_close(scripted, eager, atol=1e-4, rtol=1e-4, msg=f"torchscript at {length} steps")
        torch.testing.assert_close(onnx_out, scripted, atol=1e-4, rtol=1e-4, msg=f"onnx vs torchscript, {length}")


def test_every_lstm_export_in_one_process_keeps_the_time_axis_free(tmp_path):
    """The second time-free LSTM export of a process (e.g. a test's after another test's) unrolled
    the example's steps and fixed the time axis (state torch left from the first export:
    ``dynamic_axes.forget_earlier_exports``)."""
    for i in range(2):
        torch.manual_seed(i)
        model = sequence_model(RNN((STEPS, FEATURES), CLASSES, cell="lstm", hidden_size=8))
        written = OnnxExport().write(model, sequences(STEPS, batch=2), tmp_path / f"m{i}.onnx", SEQUENCE_AXES)
        assert written["dynamic_axes"] == ["batch", "time"], f"export {i + 1}"
        assert onnx_input_shape(tmp_path / f"m{i}.onnx") == ["batch", "time", FEATURES], f"export {i + 1}"


def trained_reference(cfg, metrics: dict) -> nn.Module:
    """The run's net with best.ckpt's weights, normalization in front: what the export holds."""
    from litlab.build import build_data, build_model
    from litlab.compression.export import with_normalization

    dm = build_data(cfg)
    net = build_model(cfg.model, dm.input_shape, dm.num_classes).net
    return with_normalization(trained_net(SimpleNamespace(net=net), metrics), dm)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_trained_recurrent_run_exports_a_free_time_axis(tiny_cfg, cell, fmt):
    """``python -m litlab.train data=synthetic_seq model=gru export=onnx``: the file of the run takes
    sequences of another length than the training one, with PyTorch's logits, and says so."""
    cfg = tiny_cfg(["data=synthetic_seq", f"data.shape=[{STEPS},{FEATURES}]", "model=" + cell,
                    "model.net.hidden_size=16", "trainer.max_epochs=1", f"export={fmt}"])
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["export/agreement"] == 1.0  # the test split, at the training length, as before
    reference = trained_reference(cfg, metrics)
    run = (onnx_runner if fmt == "onnx" else torchscript_runner)(Path(metrics["export/path"]))
    for length in LENGTHS:
        x = sequences(length)
        with torch.no_grad():
            torch.testing.assert_close(run(x), reference(x), atol=1e-4, rtol=1e-4, msg=f"{length} steps")
    assert metrics["export/dynamic_axes"] == ["batch", "time"]


@pytest.mark.parametrize("exporter, suffix", [(OnnxExport(), ".onnx"), (TorchScriptExport(), ".pt")],
                         ids=["onnx", "torchscript"])
def test_a_net_that_needs_the_training_length_keeps_it_and_says_so(tmp_path, caplog, exporter, suffix):
    """An MLP flattens (T, F) into a Linear of T*F inputs: its file takes T steps only, recorded."""
    torch.manual_seed(0)
    model = sequence_model(MLP((STEPS, FEATURES), CLASSES, hidden_sizes=(8,)))
    with caplog.at_level(logging.INFO, logger="litlab.compression.dynamic_axes"):
        written = exporter.write(model, sequences(STEPS, batch=2), tmp_path / f"m{suffix}", SEQUENCE_AXES)
    assert written["dynamic_axes"] == ["batch"]
    assert f"export={exporter.name}: the file takes sequences of {STEPS} steps only, as the net does" in caplog.text
    if exporter.name == "onnx":
        assert onnx_input_shape(tmp_path / "m.onnx") == ["batch", STEPS, FEATURES]
    run = (onnx_runner if exporter.name == "onnx" else torchscript_runner)(tmp_path / f"m{suffix}")
    with torch.no_grad():
        torch.testing.assert_close(run(sequences(STEPS)), model(sequences(STEPS)), atol=1e-4, rtol=1e-4)


def test_a_file_whose_logits_differ_at_other_lengths_is_not_recorded_free(caplog):
    """The time axis is recorded free only where the file matches PyTorch at other lengths: a trace
    that kept the training length somewhere inside would otherwise pass the agreement check (run
    at that length only) and give other logits, silently, on other lengths."""
    from litlab.compression import dynamic_axes

    torch.manual_seed(0)
    model = sequence_model(RNN((STEPS, FEATURES), CLASSES, cell="gru", hidden_size=8))

    def kept_the_length(x):  # right at the training length, shifted elsewhere
        with torch.no_grad():
            return model(x) + (0.0 if x.shape[1] == STEPS else 0.5)

    with caplog.at_level(logging.WARNING, logger="litlab.compression.dynamic_axes"):
        free = dynamic_axes.checked(SEQUENCE_AXES, ["batch", "time"], kept_the_length, model,
                                    sequences(STEPS, batch=2), "torchscript")
    assert free == ["batch"]
    assert (f"export=torchscript: the net reads sequences of any length, but the written file takes sequences of "
            f"{STEPS} steps only") in caplog.text
    assert dynamic_axes.checked(SEQUENCE_AXES, ["batch", "time"], lambda x: model(x), model,
                                sequences(STEPS, batch=2), "torchscript") == ["batch", "time"]


def test_image_files_keep_only_the_batch_axis_free(tmp_path):
    """Images: H and W stay those of the training data (the MLP's flattened input needs them)."""
    from litlab.compression import dynamic_axes

    assert dynamic_axes.requested("sequence") == SEQUENCE_AXES
    torch.manual_seed(0)
    model = nn.Sequential(Normalize("image", [0.5], [0.25]), CNN((1, 8, 8), CLASSES, channels=(4,),
                                                                 hidden_size=0)).eval()
    pixels = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    axes = dynamic_axes.requested("image")
    assert OnnxExport().write(model, pixels, tmp_path / "m.onnx", axes)["dynamic_axes"] == ["batch"]
    assert onnx_input_shape(tmp_path / "m.onnx") == ["batch", 1, 8, 8]
    assert TorchScriptExport().write(model, pixels, tmp_path / "m.pt", axes)["dynamic_axes"] == ["batch"]
    x = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(onnx_runner(tmp_path / "m.onnx")(x), model(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torchscript_runner(tmp_path / "m.pt")(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_time_free_export_after_a_batch_only_one_keeps_the_time_axis_free(tmp_path, cell):
    """A batch-only export of the same op earlier in the process (an image RNN, or a sequence net
    exported with the batch free alone) made the next time-free one unroll the example's steps:
    ``['batch', 8, 3]``, recorded ``["batch"]``."""
    torch.manual_seed(0)
    first = sequence_model(RNN((STEPS, FEATURES), CLASSES, cell=cell, hidden_size=8))
    OnnxExport().write(first, sequences(STEPS, batch=2), tmp_path / "batch_only.onnx", {0: "batch"})
    assert onnx_input_shape(tmp_path / "batch_only.onnx") == ["batch", STEPS, FEATURES]
    model = sequence_model(RNN((STEPS, FEATURES), CLASSES, cell=cell, hidden_size=8))
    written = OnnxExport().write(model, sequences(STEPS, batch=2), tmp_path / "m.onnx", SEQUENCE_AXES)
    assert onnx_input_shape(tmp_path / "m.onnx") == ["batch", "time", FEATURES]
    assert written["dynamic_axes"] == ["batch", "time"]


@pytest.mark.parametrize("batch, steps", [(1, STEPS), (2, 1)], ids=["batch-of-1", "1-step"])
def test_a_size_1_example_axis_stays_free_in_the_file(tmp_path, caplog, batch, steps):
    """``data.batch_size=1`` (or 1-step sequences) gave an example with a size-1 axis, which the
    exporter took as a constant: the ONNX input was ``[1, 'time', F]`` (onnxruntime refused a batch
    of 4) or ``['batch', 1, F]``, and the lost batch axis went unsaid."""
    torch.manual_seed(0)
    model = sequence_model(RNN((steps, FEATURES), CLASSES, cell="gru", hidden_size=8))
    with caplog.at_level(logging.INFO, logger="litlab.compression.dynamic_axes"):
        onnx_axes = OnnxExport().write(model, sequences(steps, batch=batch), tmp_path / "m.onnx", SEQUENCE_AXES)
        ts_axes = TorchScriptExport().write(model, sequences(steps, batch=batch), tmp_path / "m.pt", SEQUENCE_AXES)
    assert onnx_input_shape(tmp_path / "m.onnx") == ["batch", "time", FEATURES]
    assert onnx_axes["dynamic_axes"] == ts_axes["dynamic_axes"] == ["batch", "time"]
    assert "export=" not in caplog.text  # nothing fixed, nothing to say
    run_onnx, run_ts = onnx_runner(tmp_path / "m.onnx"), torchscript_runner(tmp_path / "m.pt")
    for length in (1, steps, 3 * steps):
        x = sequences(length, batch=4)
        with torch.no_grad():
            eager = model(x)
            torch.testing.assert_close(run_ts(x), eager, atol=1e-4, rtol=1e-4, msg=f"torchscript, {length} steps")
        torch.testing.assert_close(run_onnx(x), eager, atol=1e-4, rtol=1e-4, msg=f"onnx, {length} steps")


class RowsOfTwo(nn.Module):
    """A net whose code needs a batch of 2: it adds a fixed (2, K) table to the logits."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(STEPS * FEATURES, CLASSES)
        self.register_buffer("rows", torch.arange(2 * CLASSES, dtype=torch.float32).reshape(2, CLASSES))

    def forward(self, x):
        return self.head(x.flatten(1)) + self.rows


@pytest.mark.parametrize("exporter, suffix", [(OnnxExport(), ".onnx"), (TorchScriptExport(), ".pt")],
                         ids=["onnx", "torchscript"])
def test_a_file_that_fixes_the_batch_says_so_and_does_not_record_it_free(tmp_path, caplog, exporter, suffix):
    """An asked axis the file does not leave free is logged as a warning and left out of the record
    (TorchScript recorded the asked axes as they were, the batch never checked)."""
    torch.manual_seed(0)
    model = sequence_model(RowsOfTwo())
    with caplog.at_level(logging.WARNING, logger="litlab.compression.dynamic_axes"):
        written = exporter.write(model, sequences(STEPS, batch=2), tmp_path / f"m{suffix}", {0: "batch"})
    assert written["dynamic_axes"] == []
    assert f"export={exporter.name}: the written file takes a batch of 2 only" in caplog.text


@pytest.mark.parametrize("exporter, suffix", [(OnnxExport(), ".onnx"), (TorchScriptExport(), ".pt")],
                         ids=["onnx", "torchscript"])
def test_a_1_step_net_that_needs_its_length_is_reported_in_plain_words(tmp_path, caplog, exporter, suffix):
    """An MLP trained on 1-step sequences: "sequences of 1 step only ... (it does not run at 2 steps)"
    (was "1 steps", and "does not run at 1 and 2 steps" though it runs at 1)."""
    torch.manual_seed(0)
    model = sequence_model(MLP((1, FEATURES), CLASSES, hidden_sizes=(8,)))
    with caplog.at_level(logging.INFO, logger="litlab.compression.dynamic_axes"):
        written = exporter.write(model, sequences(1, batch=2), tmp_path / f"m{suffix}", SEQUENCE_AXES)
    assert written["dynamic_axes"] == ["batch"]
    assert (f"export={exporter.name}: the file takes sequences of 1 step only, as the net does (it does not run at "
            f"2 steps)") in caplog.text
