"""Lightning's CSV logger, but a resumed run continues ``metrics.csv`` instead of deleting it."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _ContinuingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv``: Lightning's writer deletes it when it starts, so
    ``ckpt_path=last`` in the same run directory lost every earlier epoch's rows.

    The first rows this writer saves start at the step the run resumed from; rows of the old file
    at that step or later (the unfinished epoch that the resumed run trains again) are dropped
    then, so each step appears once, from the run that finished it.
    """

    def _check_log_dir_exists(self) -> None:
        self._kept_file = self._fs.isfile(self.metrics_file_path)

    def save(self) -> None:
        if self.metrics and getattr(self, "_kept_file", False):
            self._kept_file = False
            self._continue_file(min(int(row["step"]) for row in self.metrics))
        super().save()

    def _continue_file(self, first_new_step: int) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if _step(row) < first_new_step]
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
    resume in the same folder."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
