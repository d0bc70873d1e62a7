"""``hydra/sweeper=optuna`` without litlab's ``hparams_search`` config: the sweeper's own default
direction is its enum (``Direction.minimize``), which the checks read as the string
``Direction.minimize`` and refused ("must be minimize or maximize")."""

from __future__ import annotations

import math

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra_plugins.hydra_optuna_sweeper.config import Direction
from omegaconf import OmegaConf

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.sweeps.failed_jobs import failed_job_value


def test_the_sweepers_default_direction_is_accepted(tmp_path):
    check_overrides(["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_jobs=1", "model=mlp", "optimized_metric=val/loss",
                     f"hydra.sweep.dir={tmp_path / 's'}"], "train")


def test_its_default_still_meets_the_metrics_direction(tmp_path):
    with pytest.raises(LitlabError, match=r"hydra.sweeper.direction=minimize searches for its lowest"):
        check_overrides(["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_jobs=1", "model=mlp", "optimized_metric=val/acc",
                         f"hydra.sweep.dir={tmp_path / 's'}"], "train")


@pytest.mark.parametrize("direction, worst", [(Direction.minimize, math.inf), (Direction.maximize, -math.inf),
                                              ("maximize", -math.inf), (["maximize"], -math.inf)])
def test_a_failed_trial_is_the_worst_value_of_the_direction(direction, worst):
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.cfg = OmegaConf.create({"hydra": {"sweeper": {"direction": direction}}})
    try:
        assert failed_job_value() == worst
    finally:
        hydra_config.cfg = previous
