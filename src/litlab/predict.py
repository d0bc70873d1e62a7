"""``python -m litlab.predict ckpt_path=PATH input=PATH``: classify new inputs with a checkpoint.

``input`` is one image file, a folder of images (searched recursively) or an ``.npz`` with the
samples under key ``x`` (or ``x_test``). Resizing, channels and normalization come from the
checkpoint, as do the class names. Results go to ``predictions.csv`` in the run directory (or
``output=PATH``), written batch by batch; unreadable files are listed there as errors. This module
stays light (no torch) so that command-line mistakes are reported at once; the work is
``litlab.prediction.run.predict``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litlab.config_flags import CONF_DIR
from litlab.entry import check_cli, mode_known, run_entrypoint, start


def _predict(cfg: DictConfig) -> dict:
    from litlab.prediction.run import predict  # inside run_entrypoint: Ctrl-C during the imports is recorded

    return predict(cfg)


# the folder by its absolute path: run as `litlab-predict` (a console script, which imports this
# module by name) Hydra looked for a relative "conf" in a package litlab.conf and found none
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def _hydra_main(cfg: DictConfig) -> None:
    run_entrypoint(_predict, cfg)


def main() -> None:
    """``python -m litlab.predict`` / ``litlab-predict``."""
    argv = start("predict")
    with mode_known(argv, check_cli(argv, "predict")):
        _hydra_main()


if __name__ == "__main__":
    main()
