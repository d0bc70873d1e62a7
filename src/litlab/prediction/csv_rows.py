"""``predictions.csv``: one row per input with its top-k classes, written batch by batch."""

from __future__ import annotations

import csv
from pathlib import Path

from torch import Tensor


class PredictionCsv:
    """Writes rows as they come and flushes after each batch, so an interrupted or failed run
    keeps what it predicted.

    Columns: ``input``, ``label_1``, ``prob_1`` ... ``label_k``, ``prob_k``, ``error``.

    Args:
        path: the CSV file (its folder is created).
        class_names: names by class index.
        top_k: how many classes each row lists.
    """

    def __init__(self, path: Path, class_names: list[str], top_k: int):
        self.path = Path(path)
        self.class_names = class_names
        self.top_k = min(top_k, len(class_names))
        self.predicted = 0
        self.errors: list[tuple[str, str]] = []
        self.top1_counts: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._csv = csv.writer(self._file)
        header = ["input"]
        for i in range(1, self.top_k + 1):
            header += [f"label_{i}", f"prob_{i}"]
        self._csv.writerow(header + ["error"])

    def write(self, names: list[str], logits: Tensor | None, errors: list[tuple[str, str]],
              order: list[str] | None = None) -> None:
        """One batch: ``logits`` ``(len(names), num_classes)`` for the readable inputs and the
        errors, in the input order ``order`` (every name of the batch; default: predictions first).

        Classes are ranked by logit, equal ones in class order, so ``label_1`` is the class that
        eval's and test's accuracy count (``argmax``), also where the probabilities round equal."""
        scores = None if logits is None else (logits, logits.softmax(dim=-1))
        self._write(names, scores, errors, order)

    def write_probabilities(self, names: list[str], probabilities: Tensor | None, errors: list[tuple[str, str]],
                            order: list[str] | None = None) -> None:
        """``write`` for probabilities ``(len(names), num_classes)`` given as they are (an ensemble's
        average), ranked by themselves, equal ones in class order: ``label_1`` is their argmax, the
        class eval's ensemble counts."""
        self._write(names, None if probabilities is None else (probabilities, probabilities), errors, order)

    def _write(self, names: list[str], scores: tuple[Tensor, Tensor] | None, errors: list[tuple[str, str]],
               order: list[str] | None) -> None:
        """``scores``: (what ranks the classes, the probabilities written), each ``(len(names), num_classes)``."""
        rows: dict[str, list[str]] = {}
        if scores is not None and len(names):
            ranking, probabilities = scores
            ranked = ranking.sort(dim=-1, descending=True, stable=True).indices[:, :self.top_k]
            probs = probabilities.gather(1, ranked)
            for name, values, indices in zip(names, probs.tolist(), ranked.tolist()):
                row = [name]
                for v, i in zip(values, indices):
                    row += [self.class_names[i], f"{v:.6f}"]
                rows[name] = row + [""]
                best = self.class_names[indices[0]]
                self.top1_counts[best] = self.top1_counts.get(best, 0) + 1
            self.predicted += len(names)
        for name, why in errors:
            rows[name] = [name] + [""] * (2 * self.top_k) + [why]
        for name in order or list(rows):
            self._csv.writerow(rows[name])
        self.errors += errors
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PredictionCsv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
