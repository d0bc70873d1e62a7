"""What every entrypoint does around its work: one-paragraph user errors, failed-run records."""

from __future__ import annotations

import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError
from litlab.file_only_logs import FILE_ONLY
from litlab.reporting.run_files import keep_config_record, update_metrics
from litlab.distributed.launcher import (check_shared_run_dir, distributed_job, is_rank_zero,
                                          launched_rank)
from litlab.sweeps.failed_jobs import failed_job_value

log = logging.getLogger("litlab")

# a deprecation inside Lightning itself, printed on every run; nothing a user can act on
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# conf/hydra/launcher/submitit_{local,slurm}.yaml keep the launcher names of Hydra's docs and are
# meant to be checked against the plugin's schema of the same name, which Hydra 1.3 still does;
# it warns about that four times per sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema",
                        category=UserWarning)


def check_cli(argv: list[str], config_name: str = "train") -> None:
    """Command-line checks before Hydra starts; a mistake prints one paragraph and exits 2."""
    from litlab.config_check import check_choices, check_overrides

    if launched_rank() != 0:
        return  # a DDP rank > 0 runs rank 0's command in rank 0's run directory: rank 0 checked it
    try:
        check_choices(argv)
        cfg = check_overrides(argv, config_name)
    except LitlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if config_name == "train" and cfg is not None and cfg.get("ckpt_path"):
        # a resume in its run folder: Hydra is about to rewrite the folder's config record
        run_dir = OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=False)
        if run_dir:
            keep_config_record(Path(run_dir))


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run_entrypoint(work: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """Runs ``work(cfg)``; a failure is written to ``metrics.json`` as ``status: failed``.

    User mistakes (LitlabError) print one paragraph and exit 2, other errors keep their
    traceback and exit 1. In a multirun the job returns the worst value instead (NaN, or -inf/+inf
    for a sweeper with a direction), so the sweep goes on.
    """
    try:
        with distributed_job():
            check_shared_run_dir()
            return work(cfg)
    except KeyboardInterrupt:
        _record(cfg, "interrupted", "interrupted by the user")
        raise
    except SystemExit as e:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(e, SIGTERMException):
            # Lightning's stop at a batch end after a signal, a SystemExit without a code (which
            # exits 0); the Interruption callback recorded it in metrics.json and the signal here
            sys.exit(128 + getattr(e, "signum", signal.SIGTERM))
        raise
    except Exception as e:
        user_error = isinstance(e, LitlabError)
        message = user_message(e) if user_error else f"{type(e).__name__}: {e}"
        _record(cfg, "failed", message)
        if user_error:
            log.error("%s", message, extra=FILE_ONLY)
            print(f"\nError: {message}", file=sys.stderr)
        else:
            log.error("run failed:\n%s", traceback.format_exc())
        if _is_multirun():
            return failed_job_value()  # recorded failed above; the sweep goes on
        if user_error:
            sys.exit(e.exit_code)
        raise


def user_message(e: LitlabError) -> str:
    """The one paragraph of a LitlabError, also when it was raised in a data-loader worker
    (PyTorch then prepends the worker's traceback to the message)."""
    text = str(e)
    marker = "LitlabError: "
    return text.rsplit(marker, 1)[1].strip() if "Original Traceback" in text and marker in text else text


def _record(cfg: DictConfig, status: str, message: str) -> None:
    try:
        run_dir = Path(cfg.paths.output_dir)
    except Exception:
        return
    try:
        if not is_rank_zero():
            return
        if run_dir.is_dir():
            update_metrics(run_dir, status=status, error=message)
    except OSError:
        pass
