"""What every entrypoint does around its work: one-paragraph user errors, failed-run records."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError
from litlab.file_only_logs import FILE_ONLY
from litlab.known_warnings import known_warnings_quiet
from litlab.reporting.run_files import (keep_config_record, labels_of, restore_config_record, start_origin,
                                        update_metrics, written_here)
from litlab.distributed.ranks import check_run_dir_given, is_rank_zero, launched_rank
from litlab.run_folders import take_failed_attempt
from litlab.run_lock import hold_for_run, remove_made_folders
from litlab.sweeps.failed_jobs import failed_job_value

log = logging.getLogger("litlab")

# a deprecation inside Lightning itself, printed on every run; nothing a user can act on
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# likewise: Lightning's strategy.all_gather (the evaluation report's gather of the worst samples under
# DDP) calls a torch function that torch deprecates, once per rank; a call of litlab's own still warns
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning, module=r"lightning\.fabric\.utilities\.distributed")
# conf/hydra/launcher/submitit_{local,slurm}.yaml keep the launcher names of Hydra's docs and are
# meant to be checked against the plugin's schema of the same name, which Hydra 1.3 still does;
# it warns about that four times per sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema",
                        category=UserWarning)


def hydra_main(config_name: str):
    """``hydra.main`` of the entrypoint whose config is ``conf/<config_name>.yaml``. The folder is
    given by its absolute path: run as a console script (``litlab-train``, which imports the
    module by name), Hydra looked for a relative ``conf`` in a package ``litlab.conf`` and found none."""
    import hydra

    from litlab.config_flags import CONF_DIR

    return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)


# the entrypoint this process runs (train, eval or predict), whatever its primary config is
# called (``--config-name mytrain``): DDP's child ranks run its module, set by ``start``
_entrypoint: str | None = None


def start(kind: str) -> list[str]:
    """What ``main()`` of the entrypoint ``kind`` does first; returns its command line.

    The current folder is made importable, as ``python -m`` makes it: the console scripts
    (``litlab-train``, ...) put their own bin/ folder first on ``sys.path`` instead, so a user's
    ``model.net._target_=my_nets.Tiny`` next to them could not be imported although the README
    says to run from that folder. Not under ``python -P`` (or PYTHONSAFEPATH), which asks for no
    such folder.
    """
    global _entrypoint
    _entrypoint = kind
    here = os.getcwd()
    if not sys.flags.safe_path and not any(os.path.abspath(p or ".") == here for p in sys.path):
        sys.path.insert(0, here)
    return sys.argv[1:]


def entrypoint() -> str | None:
    """The entrypoint (train, eval, predict) this process started as; None outside one."""
    return _entrypoint


def check_cli(argv: list[str], config_name: str = "train",
              checks: Callable[[DictConfig], None] | None = None) -> DictConfig | None:
    """Command-line checks before Hydra starts; a mistake prints one paragraph and exits 2.
    Returns the composed config of a single run on rank 0 (None for a sweep or another rank).

    ``checks``: the entrypoint's own checks of that config (eval's and predict's paths), which must
    need no torch: they run before it is imported, so that a mistyped path is reported at once."""
    from litlab.config_check import check_choices, check_overrides, is_sweep_command
    from litlab.print_flags import check_print_flags

    try:
        if not is_sweep_command(argv):
            check_run_dir_given(argv, config_name)  # every rank, before Hydra makes a folder for it
        if launched_rank() != 0:
            return  # a DDP rank > 0 runs rank 0's command in rank 0's run directory: rank 0 checks it
        check_choices(argv)
        if "--help" in argv or "-h" in argv:
            from litlab.cli_help import help_text

            try:
                print(help_text(config_name, argv), flush=True)
            except BrokenPipeError:  # `--help | head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        check_print_flags(argv, config_name)  # --cfg job with -m: Hydra's traceback, not a config
        cfg = check_overrides(argv, config_name)
        if checks is not None and cfg is not None:
            try:
                checks(cfg)
            except OSError as e:  # a path too long for the file system (Path.is_dir raises it): as in the run
                message = name_too_long(e, cfg)
                if message is None:
                    raise
                raise LitlabError(message) from None
        if config_name == "train" and cfg is not None and cfg.get("ckpt_path"):
            # a resume in its run folder: Hydra is about to rewrite the folder's config record
            run_dir = OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=False)
            if run_dir:
                global _kept_record
                _kept_record = keep_config_record(Path(run_dir))
        return cfg
    except LitlabError as e:
        remove_made_folders()  # the checks may have made the run's folder to hold it: a refusal leaves none
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


@contextlib.contextmanager
def mode_known(argv: list[str], cfg: DictConfig | None):
    """Hydra composes a run's whole config twice: once only to read ``hydra.mode`` (whether the
    command is a sweep), then again for the run. ``check_cli`` has composed the same config from
    the same overrides and config flags (``--config-dir``, ``--config-name``, ``--config-path``),
    so Hydra is given its mode instead of the first composition (~0.3 s of every start-up). Any
    other flag of Hydra's (``--experimental-rerun``, ...) or a command line its parser refuses
    leaves Hydra to find the mode itself."""
    from hydra._internal.hydra import Hydra

    if cfg is None or not _config_flags_only(argv) or not hasattr(Hydra, "get_mode"):
        yield
        return
    mode = OmegaConf.select(cfg, "hydra.mode")
    original = Hydra.get_mode
    Hydra.get_mode = lambda self, *args, **kwargs: mode
    try:
        yield
    finally:
        Hydra.get_mode = original


def _config_flags_only(argv: list[str]) -> bool:
    """Whether Hydra reads ``argv`` as overrides and config flags alone (``--run`` too): the
    command whose config ``check_cli`` composed."""
    from hydra._internal.utils import get_args_parser

    from litlab.config_flags import hydra_args

    args = hydra_args(argv)
    if args is None:
        return False
    defaults = vars(get_args_parser().parse_args([]))
    return all(value == defaults.get(key) for key, value in vars(args).items()
               if key not in ("overrides", "config_dir", "config_name", "config_path", "run"))


# the copy of a resumed run's earlier record that ``check_cli`` made (None without a resume)
_kept_record: Path | None = None


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (a sweep)."""
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def lightning_logs_to_console() -> None:
    """Lightning's own messages ("GPU available: ...") as plain console lines, outside the run's log
    file. Lightning sets that up itself when it is imported before any logging is configured; the
    entrypoints import it only after Hydra has configured logging, so it is set up here. Lightning's
    tips for its cloud products are left out (``NoProductTips``)."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler())
            logger.propagate = False
        for handler in logger.handlers:
            if not any(isinstance(f, NoProductTips) for f in handler.filters):
                handler.addFilter(NoProductTips())


class NoProductTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines, printed on every
    fit: advertisements, not facts about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def run_entrypoint(work: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """Runs ``work(cfg)``; a failure is written to ``metrics.json`` as ``status: failed``.

    User mistakes (LitlabError) print one paragraph and exit 2, other errors keep their
    traceback and exit 1. In a multirun the job returns the worst value instead (NaN, or -inf/+inf
    for a sweeper with a direction), so the sweep goes on. A run folder that another command holds
    (``_hold_run_folder``) is refused in the same way, but without a record: the one there is not ours.
    """
    lightning_logs_to_console()
    try:
        _hold_run_folder(cfg)
    except LitlabError as e:
        # another command works in this folder now (two starts in one second share a timestamped
        # folder): its metrics.json is that command's, so this start writes no record there. Hydra has
        # already rewritten the folder's .hydra/ and opened its log by now: a folder not timestamped
        # is refused before that, by the command line's checks (``run_folders.check_run_folders``)
        print(f"\nError: {e}", file=sys.stderr)
        if is_multirun():
            return failed_job_value()
        sys.exit(e.exit_code)
    try:
        from litlab.distributed.launcher import distributed_job  # imports Lightning

        with distributed_job(cfg.get("trainer")), known_warnings_quiet(cfg):
            value = work(cfg)
        return value
    except KeyboardInterrupt as e:
        # Ctrl-C, or SIGTERM (``Terminated``), where Lightning's loops do not catch it (compression,
        # export) or a second time: recorded, one line, the shell's exit status of that signal
        _exit_interrupted(cfg, getattr(e, "signum", signal.SIGINT))
    except SystemExit as e:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(e, SIGTERMException):
            # Lightning's stop at a batch end after a signal, a SystemExit without a code (which
            # exits 0); the Interruption callback recorded it in metrics.json and the signal here
            sys.exit(128 + getattr(e, "signum", signal.SIGTERM))
        if isinstance(e.__context__, KeyboardInterrupt):
            # Lightning ends a KeyboardInterrupt inside its loops (a second Ctrl-C, or SIGTERM's
            # Terminated where its own handler was not in place) with sys.exit(1): the signal's status
            _exit_interrupted(cfg, getattr(e.__context__, "signum", signal.SIGINT))
        raise
    except Exception as e:
        too_long = name_too_long(e, cfg)
        user_error = isinstance(e, LitlabError) or _is_misconfiguration(e) or too_long is not None
        message = too_long or (user_message(e) if user_error else f"{type(e).__name__}: {e}")
        _record(cfg, "failed", message)
        if user_error:
            # an error every rank of a multi-process run raised alike (``same_on_every_rank``): rank 0 prints it
            if is_rank_zero() or not getattr(e, "same_on_every_rank", False):
                log.error("%s", message, extra=FILE_ONLY)
                print(f"\nError: {message}", file=sys.stderr)
        else:
            log.error("run failed:\n%s", traceback.format_exc())
        if is_multirun():
            return failed_job_value()  # recorded failed above; the sweep goes on
        if user_error:
            sys.exit(getattr(e, "exit_code", 2))
        raise


def _hold_run_folder(cfg: DictConfig) -> None:
    """Rank 0 holds the run's folder while the command works in it (``run_lock.hold_for_run``),
    from before its record says ``running`` (train's, lr_find's) until the process, or the sweep's
    job, ends: a folder whose record says running and that no command holds reads as killed. DDP's
    other ranks work in rank 0's folder and take nothing. A failed eval or predict of the same
    command in that folder is this command's to retry: its record begins afresh
    (``run_folders.take_failed_attempt``)."""
    try:
        run_dir = cfg.paths.output_dir
    except Exception:  # a config without one writes no record either (``_record``)
        return
    if run_dir and launched_rank() == 0:
        hold_for_run(Path(run_dir), None if is_multirun() else "hydra.run.dir")  # None: named as the job's folder
        take_failed_attempt(Path(run_dir), cfg.get("task_name"))


def name_too_long(e: Exception, cfg: DictConfig) -> str | None:
    """The one paragraph for a path the OS refused as too long (ENAMETOOLONG), e.g. eval's
    ``ckpt_path`` with a 300-character file name, which ended in a traceback: the path is the
    user's, so it is their mistake to fix. Names the config key that holds the path, if one does."""
    if not isinstance(e, OSError) or e.errno != errno.ENAMETOOLONG:
        return None
    path = os.fsdecode(e.filename) if e.filename is not None else None
    key = _key_holding(cfg, path) if path else None
    where = f"{key}={path}" if key else (path or "a path")
    return (f"{where}: a name in this path is too long for the file system (the limit per file or folder name is "
            f"usually 255 bytes, and per path 4096). Give {f'{key}= ' if key else ''}a path with shorter names.")


def _key_holding(cfg: DictConfig, path: str) -> str | None:
    """The top-level key of ``cfg`` (``ckpt_path``, ``input``, ``output``, ...) whose value is
    ``path``, or holds its longest name (the one too long: the OS may name a folder above the
    given file, or a file below the given folder); None when none does."""
    target = Path(path).absolute()
    longest = max(target.parts, key=len)
    for key in cfg:
        try:
            value = cfg.get(key)
        except Exception:  # an interpolation that cannot be resolved here
            continue
        if isinstance(value, str) and value and (Path(value).absolute() == target
                                                 or longest in Path(value).absolute().parts):
            return str(key)
    return None


def end_sweep() -> None:
    """After a sweep in which some job did not complete: one paragraph last, naming them, and exit
    status 1 where the sweep fails (every job failed, or any did under ``sweep_fails_on=any``), so
    that scripts and CI see it; Hydra itself ends every sweep with 0. The jobs are counted from
    their run folders (``sweeps.outcome``), wherever they ran: this process, submitit's or SLURM's.
    Only rank 0 gets here: the other ranks of a DDP job return from ``main`` before."""
    from litlab.sweeps import outcome

    message, fails = outcome.unfinished_jobs()
    if message:
        print(f"\n{'Error: ' if fails else ''}{message}", file=sys.stderr)
    if fails:
        sys.exit(1)


def _is_misconfiguration(e: Exception) -> bool:
    """Lightning's MisconfigurationException: a setting Lightning cannot run, worded by Lightning
    (looked up only if Lightning was imported, which it must have been to raise it)."""
    exceptions = sys.modules.get("lightning.fabric.utilities.exceptions")
    return exceptions is not None and isinstance(e, exceptions.MisconfigurationException)


class Terminated(KeyboardInterrupt):
    """SIGTERM where no Lightning loop turns it into a stop at a batch end: it stops the work at
    once, as Ctrl-C does there, and the entrypoint records the run as interrupted."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def sigterm_stops_here():
    """Inside, SIGTERM raises ``Terminated`` instead of killing the process on the spot (Python's
    default), which would leave ``metrics.json`` saying ``running``. For work outside Lightning's
    loops (compression, fine-tuning, export), which have no batch-end stop of their own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_sigterm(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def user_message(e: Exception) -> str:
    """The one paragraph of a LitlabError, also when it was raised in a data-loader worker
    (PyTorch then prepends the worker's traceback to the message), or of Lightning's
    MisconfigurationException (its lines joined)."""
    text = str(e)
    marker = "LitlabError: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text if isinstance(e, LitlabError) else " ".join(text.split())


def _exit_interrupted(cfg, signum: int) -> None:
    """Records the interruption, says so in one line, and exits with the shell's status of that signal."""
    name = signal.Signals(signum).name
    _record(cfg, "interrupted", f"interrupted by signal {name}")
    resume = _resume_recorded(cfg)
    again = f" Resume with: {resume}" if resume else ""
    print(f"\nInterrupted by signal {name}; metrics.json records it.{again}", file=sys.stderr)
    sys.exit(128 + signum)


def _resume_recorded(cfg) -> str | None:
    """The command that resumes an interrupted training run, from its ``metrics.json`` (the
    Interruption callback's, or ``_start_origin``'s), recorded here where none is yet and the run
    has a ``last.ckpt``: a stop outside Lightning's loops (compression, export, after fit) had the
    status but no ``resume``. None for eval, a record of another start, or nothing to resume."""
    from litlab.reporting.run_files import read_json

    try:
        run_dir = Path(cfg.paths.output_dir)
        if cfg.get("task_name") != "train" or not is_rank_zero() or not written_here(run_dir):
            return None
        metrics = run_dir / "metrics.json"
        recorded = read_json(metrics).get("resume") if metrics.is_file() else None
        last = run_dir / "checkpoints" / "last.ckpt"
        if recorded is None and last.is_file():
            # the words the Interruption callback records
            from litlab.run_commands import resume_command

            recorded = resume_command(run_dir)
            update_metrics(run_dir, resume=recorded, last_ckpt=str(last))
    except Exception:  # a config without a run folder, an unreadable record: the line says no more (``_record``)
        return None
    # "no checkpoint yet, nothing to resume; ..." is the record's answer, not a command
    return recorded if isinstance(recorded, str) and recorded.startswith("python -m") else None


def _record(cfg: DictConfig, status: str, message: str) -> None:
    """Writes the outcome into the run's metrics.json, unless that record belongs to an earlier
    start of the run that this process never began (a resume refused before it started): then
    that record, and the config record Hydra replaced, are left as they were. The first record of a
    training start names the checkpoint it began from (``_start_origin``)."""
    try:
        run_dir = Path(cfg.paths.output_dir)
    except Exception:
        return
    try:
        if not is_rank_zero() or not run_dir.is_dir():
            return
        if not written_here(run_dir):
            if _kept_record is not None and _kept_record.parent.parent.resolve() == run_dir.resolve():
                restore_config_record(_kept_record)
            log.warning("%s; this start never began, so %s keeps the earlier start's record.", status,
                        run_dir / "metrics.json")
            return
        task = {"task": cfg.task_name} if cfg.get("task_name") else {}  # also when it failed before its work began
        first = {} if (run_dir / "metrics.json").is_file() else {**_start_origin(cfg, run_dir, status),
                                                                  **labels_of(cfg)}
        update_metrics(run_dir, status=status, error=message, **task, **first)
    except OSError:
        pass


def _start_origin(cfg: DictConfig, run_dir: Path, status: str) -> dict:
    """What the first record of a training start from a checkpoint carries (``started_from``,
    ``run_files.start_origin``) where the start ended before ``training.train`` wrote its own:
    Ctrl-C or a failure while litlab prepared the data, or a resume refused. Without it the folder
    held a run "stopped before its first checkpoint" that nothing could resume, and refused the
    command that does. An interrupted start's record also holds that command (``resume``), as the
    Interruption callback's does. ``ckpt_path=last`` and a path to no file name nothing to resume from."""
    ckpt = cfg.get("ckpt_path") if cfg.get("task_name") == "train" else None
    if not ckpt or str(ckpt) == "last" or not os.path.isfile(ckpt):  # isfile: False for a name too long
        return {}
    origin = start_origin(ckpt)
    if status == "interrupted":
        from litlab.run_commands import resume_command

        origin["resume"] = resume_command(run_dir, Path(origin["started_from"]))
    return origin
