"""``python -m litlab.train``: the command line around ``litlab.training.train``.

Importing this module stays light (Hydra and OmegaConf, no torch or Lightning), so a mistake in
the command line is reported in a fraction of a second; the training code is imported once the
configuration has been checked and composed.
"""

from __future__ import annotations

from omegaconf import DictConfig

from litlab.config_check import is_sweep_command
from litlab.distributed.ranks import launched_rank
from litlab.entry import (check_cli, end_sweep, hydra_main, mode_known, run_entrypoint, sigterm_stops_here,
                          start)
from litlab.sweeps.interrupted import sweep_stops_on_signals


def _train(cfg: DictConfig) -> float | None:
    with sigterm_stops_here():  # seconds of imports, inside run_entrypoint: a signal here is recorded
        from litlab.training import train

    return train(cfg)


@hydra_main("train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_entrypoint(_train, cfg)


def main() -> None:
    """``python -m litlab.train`` / ``litlab-train``."""
    argv = start("train")
    cfg = check_cli(argv)
    if not is_sweep_command(argv) or launched_rank() != 0:  # a DDP rank > 0 runs one job of rank 0's sweep
        with mode_known(argv, cfg):
            _hydra_main()
        return
    with sweep_stops_on_signals():  # one line and 130/143 whichever launcher ran the jobs
        _hydra_main()
    end_sweep()


if __name__ == "__main__":
    main()
