"""Resuming a stored Optuna study with the sampler's fixed seed proposed the first start's trials
again (conf/hparams_search/digits_optuna.yaml fixes sampler.seed: 1234): refused before any job."""

from __future__ import annotations

import optuna
import pytest

from litlab.config_check import compose_checked
from litlab.errors import LitlabError
from litlab.sweeps.optuna_resume import SEEDS_ATTR, check_study_resume, record_seed


def _cfg(db, *extra):
    return compose_checked(["hparams_search=digits_optuna", f"hydra.sweeper.storage=sqlite:///{db}",
                            "hydra.sweeper.study_name=S", *extra], "train", return_hydra_config=True)


def _add_trial(study, x):
    study.add_trial(optuna.trial.create_trial(params={"x": x}, value=x,
                                              distributions={"x": optuna.distributions.UniformDistribution(0, 10)}))


def _study(db, n_trials, seeds=None, name="S"):
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name=name, direction="maximize")
    if seeds is not None:
        study.set_user_attr(SEEDS_ATTR, seeds)
    for i in range(n_trials):
        _add_trial(study, float(i))


pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_resuming_a_study_with_the_configs_seed_is_refused(tmp_path):
    db = tmp_path / "optuna.db"
    _study(db, 3)
    with pytest.raises(LitlabError) as e:
        check_study_resume(_cfg(db))
    message = str(e.value)
    assert "already holds the study S with 3 trials" in message
    assert "seed 1234" in message and "hydra.sweeper.sampler.seed=1237" in message
    assert "\n" not in message


def test_a_seed_chosen_on_the_command_line_continues_a_study_without_records(tmp_path):
    db = tmp_path / "optuna.db"
    _study(db, 3)
    check_study_resume(_cfg(db, "hydra.sweeper.sampler.seed=1237"))


def test_a_seed_the_study_was_started_with_is_refused_also_from_the_command_line(tmp_path):
    db = tmp_path / "optuna.db"
    _study(db, 3, seeds=[1234, 1237])
    with pytest.raises(LitlabError, match=r"seed 1237 \(seeds used so far: 1234, 1237\).*seed=1240"):
        check_study_resume(_cfg(db, "hydra.sweeper.sampler.seed=1237"))
    check_study_resume(_cfg(db, "hydra.sweeper.sampler.seed=1240"))  # a new one


def test_record_seed_notes_each_start_and_the_next_start_with_that_seed_is_refused(tmp_path):
    db = tmp_path / "optuna.db"
    record_seed(_cfg(db))  # the first start: the study is created as the sweeper would
    study = optuna.load_study(study_name="S", storage=f"sqlite:///{db}")
    assert study.user_attrs[SEEDS_ATTR] == [1234] and study.direction == optuna.study.StudyDirection.MAXIMIZE
    check_study_resume(_cfg(db))  # no trials yet: nothing to repeat
    _add_trial(study, 1.0)
    with pytest.raises(LitlabError, match="with 1 trials"):
        check_study_resume(_cfg(db, "hydra.sweeper.sampler.seed=1234"))
    record_seed(_cfg(db, "hydra.sweeper.sampler.seed=1235"))
    assert optuna.load_study(study_name="S", storage=f"sqlite:///{db}").user_attrs[SEEDS_ATTR] == [1234, 1235]


@pytest.mark.parametrize("case", ["no file", "other study", "no seed", "in memory"])
def test_a_fresh_study_or_an_unseeded_sampler_passes(tmp_path, case):
    db = tmp_path / "optuna.db"
    if case == "no file":
        check_study_resume(_cfg(db))
        assert not db.exists()  # the check never creates the database
        return
    _study(db, 3, name="S" if case != "other study" else "T")
    extra = {"no seed": ["hydra.sweeper.sampler.seed=null"]}.get(case, [])
    cfg = _cfg(db, *extra)
    if case == "in memory":
        cfg = compose_checked(["hparams_search=digits_optuna", "hydra.sweeper.study_name=S"], "train",
                              return_hydra_config=True)
    check_study_resume(cfg)
