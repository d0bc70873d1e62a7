"""Lightning's CSV logger, but a resumed run continues ``metrics.csv`` instead of deleting it."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _ContinuingWriter(ExperimentWriter):
    """Keeps the rows of an existing ``metrics.csv`` logged before ``keep_before`` (Lightning's
    writer deletes the file when it starts, so ``ckpt_path=last`` in the same run directory lost
    every earlier epoch's rows). Rows at that step or later, the unfinished epoch that the resumed
    run trains again, are dropped, so each step appears once, from the run that finished it."""

    def __init__(self, log_dir: str, keep_before: int = 0):
        self.keep_before = keep_before  # read by _check_log_dir_exists, which super().__init__ calls
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if _step(row) < self.keep_before]
        tmp = self.metrics_file_path + ".tmp"
        with self._fs.open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_file_path)
        self.metrics_keys = sorted(keys)


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


class CSVLogger(_LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` (same arguments) whose ``metrics.csv`` survives a
    resume in the same folder (``continue_from_step``)."""

    _keep_before = 0

    def continue_from_step(self, step: int) -> None:
        """The run resumes at optimizer step ``step`` in this folder: the earlier run's rows before
        that step are kept (called before the first write, as ``TensorBoardLogger``'s is)."""
        self._keep_before = int(step)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir, keep_before=self._keep_before)
        return self._experiment
