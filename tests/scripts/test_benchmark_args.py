"""scripts/benchmark.py's contract outside its measurements: the command line is checked before
any case runs, a crashed case fails the run and keeps its reason and targets, the GPU case's
peak table matches device names exactly, and the timed window holds every callback's epoch work.
Nothing here asserts a timing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SCRIPT = SCRIPTS / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    """scripts/benchmark.py as a module, with scripts/ importable (for ``bench``)."""
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("benchmark_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(SCRIPTS))


def usage_error(benchmark, capsys, argv: list[str]) -> str:
    """The one-line message of a command line that must be refused with exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        benchmark.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_json_path_that_is_a_folder_is_refused_before_any_case(benchmark, capsys, tmp_path):
    message = usage_error(benchmark, capsys, ["--json", str(tmp_path)])
    assert f"--json {tmp_path}: is a folder" in message
    # a file in folders yet to be made is fine: they are created when the results are written
    args = benchmark.parse_args(["--json", str(tmp_path / "new" / "deeper" / "out.json")])
    assert args.json == tmp_path / "new" / "deeper" / "out.json"


def test_json_path_under_a_file_is_refused(benchmark, capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "x" / "out.json"
    message = usage_error(benchmark, capsys, ["--json", str(out)])
    assert f"--json {out}: {tmp_path / 'afile'} is a file, not a folder" in message


def test_work_dir_that_is_a_file_is_refused(benchmark, capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    message = usage_error(benchmark, capsys, ["--work-dir", str(tmp_path / "afile")])
    assert f"--work-dir {tmp_path / 'afile'}: {tmp_path / 'afile'} is a file, not a folder" in message


@pytest.mark.parametrize("arg", ["--cases=", "--cases=training,,data", "--cases=training,"])
def test_empty_case_name_is_named_as_such(benchmark, capsys, arg):
    message = usage_error(benchmark, capsys, [arg])
    assert "--cases: the list" in message and "has an empty name" in message


def test_case_names_may_have_spaces_after_commas(benchmark):
    assert benchmark.parse_args(["--cases", "training, data"]).cases == ["training", "data"]


# dense bf16 peaks by the names torch.cuda.get_device_name gives; names nest ("L4" in "L40", "A10"
# in "A10G", "H100" in "H100 PCIe"), and a variant whose peak is not on record gets none (its MFU
# is then unknown) rather than the figure of a name it contains
PEAKS = {"NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H100 NVL": None, "NVIDIA H200": 989e12,
         "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA L4": 121e12, "NVIDIA L40": 181e12, "NVIDIA L40S": 362e12,
         "NVIDIA A10": 125e12, "NVIDIA A10G": None, "NVIDIA GeForce RTX 4090": None}


def test_device_peak_takes_the_most_specific_name(benchmark, monkeypatch):
    from bench import gpu

    found = {}
    for device in PEAKS:
        monkeypatch.setattr(gpu.torch.cuda, "get_device_name", lambda index=0, device=device: device)
        found[device] = gpu.device_peak()
    assert found == PEAKS


def test_failure_reason_is_one_line_that_keeps_the_childs_error(benchmark):
    # a child's command line with long paths, then its stderr: a traceback ending in its error
    stderr = ('Traceback (most recent call last):\n  File "train.py", line 1, in <module>\n    main()\n'
              'ValueError: bad value\n')
    error = RuntimeError(f"python -m litlab.train paths.data_dir=/{'p' * 600} printed no first-step stamp "
                         f"(exit 1):\n{stderr}")
    reason = benchmark.failure_reason(error)
    assert "\n" not in reason and len(reason) <= 500
    assert reason.startswith("failed: RuntimeError: python -m litlab.train paths.data_dir=/ppp")
    assert reason.endswith("... ValueError: bad value") and "File" not in reason and "Traceback" not in reason


class FakeClock:
    """``time`` for ``bench.timing``: advanced only by the callbacks below, so that the window
    the timer measures says which callbacks' work it holds (a count, not a timing)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_epoch_window_holds_every_callbacks_epoch_start_and_batch_end(benchmark, monkeypatch):
    import lightning.pytorch as L
    import torch
    from bench import timing
    from torch.utils.data import DataLoader, TensorDataset

    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)

    class Work(L.Callback):
        """One unit of per-epoch and per-batch work, as a framework's callback does."""

        def on_train_epoch_start(self, trainer, pl_module):
            clock.now += 1

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.now += 1

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    timer = timing.EpochTimer()
    # as on litlab's command line: the timer comes after the framework's callbacks (and before
    # Lightning's own, which it appends)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Work(), timer, Work()])
    data = TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,)))
    trainer.fit(Tiny(), DataLoader(data, batch_size=4))
    # per epoch: two epoch starts and 3 batches x two batch ends, all inside the window
    assert timer.epochs == [(8.0, 12), (8.0, 12)]


@pytest.mark.slow
def test_a_crashed_case_fails_the_run_and_keeps_its_reason_and_target(benchmark, capsys, tmp_path):
    # the start-up child refuses a data folder that is a file (litlab's one-paragraph "Error: ...");
    # the script's main in this process, as the tiny benchmark's fixture runs it: a process start-up
    # (torch, Lightning) less, and its return value is the exit status (`sys.exit(main())`)
    (tmp_path / "work" / "tiny").mkdir(parents=True)
    (tmp_path / "work" / "tiny" / "data").write_text("")
    out = tmp_path / "out" / "fail.json"
    code = benchmark.main(["--tiny", "--cases", "startup", "--markdown", "--work-dir", str(tmp_path / "work"),
                           "--json", str(out)])
    proc = capsys.readouterr()
    assert code == 1, proc.err[-3000:]
    assert proc.err.strip().splitlines()[-1] == "benchmark: 1 case(s) failed: startup"
    (rec,) = json.loads(out.read_text())["cases"]
    assert rec["name"] == "startup_first_step_vs_import_lightning"
    assert rec["target"] == "ratio <= 1.5" and rec["met"] is False and rec["ratio"] is None
    reason = rec["skipped"]
    assert reason.startswith("failed: RuntimeError: ") and "\n" not in reason and len(reason) <= 500
    assert f"Error: paths.data_dir={tmp_path / 'work' / 'tiny' / 'data'} is a file, not a folder" in reason
    assert reason in proc.out and "(target ratio <= 1.5: NO)" in proc.out
    assert f"| ratio <= 1.5 | **no**, skipped: {reason} |" in proc.out
