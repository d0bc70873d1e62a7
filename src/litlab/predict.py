"""``python -m litlab.predict ckpt_path=PATH input=PATH``: classify new inputs with a checkpoint.

``input`` is one image file, a folder of images (searched recursively, leaving out litlab's own
run folders and ``paths.log_dir``) or an ``.npz`` with the samples under key ``x`` (or
``x_test``). Resizing, channels and normalization come from the checkpoint, as do the class names;
image files of another size are resized, counted in metrics.json (``resized``) and said once.
Results go to ``predictions.csv`` in the run directory (or ``output=PATH``), written batch by
batch; unreadable files are listed there as errors. ``ckpt_path=[A,B]`` or a sweep folder
predicts with an ensemble, the average of its members' probabilities (``prediction.ensemble``).
This module stays light (no torch) so that command-line mistakes are reported at once; the work
is ``litlab.prediction.run.predict``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from litlab.entry import check_cli, hydra_main, mode_known, run_entrypoint, start
from litlab.prediction.path_checks import check_command_line


def _predict(cfg: DictConfig) -> dict:
    from litlab.prediction.run import predict  # inside run_entrypoint: Ctrl-C during the imports is recorded

    return predict(cfg)


@hydra_main("predict")
def _hydra_main(cfg: DictConfig) -> None:
    run_entrypoint(_predict, cfg)


def main() -> None:
    """``python -m litlab.predict`` / ``litlab-predict``."""
    argv = start("predict")
    with mode_known(argv, check_cli(argv, "predict", check_command_line)):
        _hydra_main()


if __name__ == "__main__":
    main()
