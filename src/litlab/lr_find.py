"""``python -m litlab.lr_find``: a learning-rate range test before a long run (Lightning's
``Tuner.lr_find``, fastai's ``learn.lr_find()``).

It takes the groups and overrides of ``python -m litlab.train`` (``model=mlp data=npz ...``) plus
``lr_find.*`` (conf/lr_find.yaml), raises the rate step by step from ``lr_find.min_lr`` to
``lr_find.max_lr`` while training as the run would, and suggests the rate where the smoothed loss
falls fastest. One range test per command: ``-m`` sweeps, ``hparams_search`` and ``ckpt_path`` are
refused. This module stays light (no torch or Lightning), so that command-line mistakes are
reported at once; the work is ``litlab.tuning.lr_range.lr_find``.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from litlab.config_check import is_sweep_command
from litlab.distributed.ranks import started_by_launcher
from litlab.entry import check_cli, hydra_main, mode_known, run_entrypoint, start
from litlab.errors import LitlabError
from litlab.tuning.lr_settings import check_range_command


def check_one_process(argv: list[str]) -> None:
    """One range test per command, in one process: a sweep or a torchrun/SLURM rank is refused
    before Hydra makes any folder."""
    if is_sweep_command(argv):
        raise LitlabError("python -m litlab.lr_find runs one range test per command; -m/--multirun and "
                          "hparams_search are refused. Run it once per setting you want to compare (e.g. once with "
                          "model=mlp and once with model=cnn): each run writes its own folder.")
    if started_by_launcher():
        raise LitlabError("python -m litlab.lr_find runs in one process, and this one was started by torchrun or "
                          "SLURM as one rank of several. Start it with plain python: a multi-GPU trainer config is run "
                          "on one device with the same samples per optimizer step (gradient accumulation).")


def _lr_find(cfg: DictConfig) -> dict:
    from litlab.tuning.lr_range import lr_find  # inside run_entrypoint: Ctrl-C during the imports is recorded

    return lr_find(cfg)


@hydra_main("lr_find")
def _hydra_main(cfg: DictConfig) -> None:
    run_entrypoint(_lr_find, cfg)


def main() -> None:
    """``python -m litlab.lr_find`` / ``litlab-lr-find``."""
    argv = start("lr_find")
    try:
        check_one_process(argv)
    except LitlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    with mode_known(argv, check_cli(argv, "lr_find", check_range_command)):
        _hydra_main()


if __name__ == "__main__":
    main()
