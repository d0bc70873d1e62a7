"""A test-only callback, added with ``+callbacks.digest=...``: what each rank saw and ended with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning.pytorch as L


class WeightDigest(L.Callback):
    """Writes ``out_dir/rank<r>.json``: samples this rank trained on per epoch, and a hash of its weights."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.samples: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.samples.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples[-1] += len(batch[1])

    def on_fit_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "samples_per_epoch": self.samples,
                  "weights_sha256": digest.hexdigest()}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def digest_override(out_dir: Path) -> str:
    """The command-line override that adds this callback."""
    return f"+callbacks.digest={{_target_:tests.scale.weight_digest.WeightDigest,out_dir:'{out_dir}'}}"


def read_digests(out_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("rank*.json"))]
