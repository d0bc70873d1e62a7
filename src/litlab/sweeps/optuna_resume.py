"""Resuming a stored Optuna study (``hydra.sweeper.storage=sqlite:///optuna.db``).

Hydra's Optuna sweeper loads a study that is already in the storage (``load_if_exists``) and gives
it a new sampler on every start. A sampler with a fixed seed (``hydra.sweeper.sampler.seed``, 1234
in conf/hparams_search/digits_optuna.yaml) then starts its sequence over and proposes the trials
of the earlier start again (TPE's first 10 trials are random ones, from that seed). So before any
job, ``check_study_resume`` refuses a seed the stored study has already been searched with, and
``record_seed`` notes each start's seed in the study (a user attribute), when the sweep starts.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError

# the study's user attribute that lists the sampler seeds litlab started it with
SEEDS_ATTR = "litlab_sampler_seeds"


def _setting(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, f"hydra.sweeper.{key}", default=None, throw_on_resolution_failure=False)


def _stored_study(cfg: DictConfig) -> tuple[str, str, int] | None:
    """``(storage URL, study name, seed)`` of an Optuna search that keeps its study in a database
    with a fixed sampler seed; None otherwise (in memory, a new study name each start, no seed)."""
    url, name, seed = _setting(cfg, "storage"), _setting(cfg, "study_name"), _setting(cfg, "sampler.seed")
    if not isinstance(url, str) or not url or not isinstance(name, str) or not name:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        return None  # no seed: a new random sequence every start
    return url, name, seed


def _may_exist(url: str) -> bool:
    """Whether the storage may already hold studies. An sqlite file that is not there holds none,
    and opening it would create it: it is not opened."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return False  # not a database URL: the sweeper says so
    if parsed.get_backend_name() != "sqlite":
        return True
    database = parsed.database
    return bool(database) and database != ":memory:" and Path(database).is_file()


def stored_trials(url: str, name: str) -> tuple[int, list[int]] | None:
    """The number of trials of study ``name`` in the storage at ``url`` and the sampler seeds
    recorded for it; None where the storage or the study does not exist yet (a fresh study) or
    cannot be read (the sweeper reports that itself)."""
    if not _may_exist(url):
        return None
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception:
        return None
    try:
        study_id = storage.get_study_id_from_name(name)
        n_trials = storage.get_n_trials(study_id)
        seeds = storage.get_study_user_attrs(study_id).get(SEEDS_ATTR) or []
    except Exception:  # KeyError: no such study in it
        return None
    finally:
        storage.engine.dispose()
    return n_trials, [s for s in seeds if isinstance(s, int)]


def check_study_resume(cfg: DictConfig) -> None:
    """A search whose study is already stored with trials must not start its seeded sampler over:
    it would propose the same parameter sets again. Refused when the seed is one the study was
    started with before; for a study without litlab's record of its seeds, when the seed is the
    configuration's own (not chosen on the command line)."""
    search = _stored_study(cfg)
    if search is None:
        return
    url, name, seed = search
    stored = stored_trials(url, name)
    if stored is None or stored[0] == 0:
        return  # a fresh study
    n_trials, seeds = stored
    if seeds:
        repeats = seed in seeds
    else:  # a study started before litlab recorded seeds: only a seed chosen now is known to be new
        chosen = [o for o in OmegaConf.select(cfg, "hydra.overrides.hydra", default=None) or []
                  if o.split("=", 1)[0].lstrip("+~") == "hydra.sweeper.sampler.seed"]
        repeats = not chosen
    if not repeats:
        return
    used = f" (seeds used so far: {', '.join(map(str, seeds))})" if seeds else ""
    suggestion = seed + n_trials
    while suggestion in seeds:
        suggestion += 1
    raise LitlabError(
        f"hydra.sweeper.storage={url} already holds the study {name} with {n_trials} trials, and its sampler with "
        f"seed {seed}{used} would start its sequence over and propose the same trials again. To continue the "
        f"search, pass another seed: hydra.sweeper.sampler.seed={suggestion}. The new trials go to a new sweep "
        f"folder (python -m litlab.summarize ranks the jobs of one folder)."
    )


def record_seed(cfg: DictConfig) -> None:
    """Notes the sampler seed of a search that starts now in its stored study, creating the study
    as the sweeper is about to (``load_if_exists``), so that a later start can tell whether its
    seed was used. Bookkeeping only: any failure leaves it to the sweeper."""
    search = _stored_study(cfg)
    if search is None or OmegaConf.select(cfg, "hydra.runtime.choices", default={}).get("hydra/sweeper") != "optuna":
        return
    url, name, seed = search
    direction = _setting(cfg, "direction")
    directions = [str(d) for d in direction] if OmegaConf.is_list(direction) else [str(direction)]
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper says which study it uses
    try:
        storage = optuna.storages.RDBStorage(url)
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True)
            seeds = [s for s in study.user_attrs.get(SEEDS_ATTR) or [] if isinstance(s, int)]
            if seed not in seeds:
                study.set_user_attr(SEEDS_ATTR, [*seeds, seed])
        finally:
            storage.engine.dispose()
    except Exception:
        pass
    finally:
        optuna.logging.set_verbosity(verbosity)
