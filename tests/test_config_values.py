"""A composed config's values are checked before any work (config_values.py): each mistake is
one paragraph naming the key, where it used to be a traceback after the data was prepared."""

from __future__ import annotations

import pytest

from litlab.config_check import check_overrides
from litlab.errors import LitlabError


@pytest.mark.parametrize("overrides,match", [
    (["model.optimizer.lr=${model.optimizer.lrr}"],
     r"^model\.optimizer\.lr=\$\{model\.optimizer\.lrr\} cannot be resolved: Interpolation key 'model\.optimizer\.lrr' "
     r"not found\. A \$\{\.\.\.\} must name a key of the config"),
    (["data=imagefolder", "data.root=${oc.env:LITLAB_TEST_UNSET_VARIABLE}"],
     r"^data\.root=\$\{oc\.env:LITLAB_TEST_UNSET_VARIABLE\} cannot be resolved: .*Environment variable "
     r"'LITLAB_TEST_UNSET_VARIABLE' not found.*\$\{oc\.env:NAME,default\} gives a default"),
    # the scheduler's T_max follows trainer.max_epochs
    (["~trainer.max_epochs"], r"^model\.scheduler\.T_max=\$\{trainer\.max_epochs\} cannot be resolved"),
    (["~seed"], r"^seed is required by python -m litlab\.train and is missing from the config \(an override ~seed "
                r"removes it\)"),
    (["~model"], r"^model is required"),
    (["test=no"], r"^test must be true or false, got 'no'\.$"),
    (["hydra.job.chdir=true"], r"^hydra\.job\.chdir=true is not supported: litlab reads relative paths"),
    (["+seed=3"], r"^\+seed adds a new key, but seed is already a key of the config\. Drop the \+ to set it"),
    (["model.net=???"], r"^model\.net has no value \(\?\?\? in its config file\)"),
])
def test_a_value_that_cannot_be_used_is_named_before_any_work(overrides, match):
    with pytest.raises(LitlabError, match=match):
        check_overrides(overrides, "train")


def test_runtime_interpolations_and_set_variables_pass(monkeypatch):
    """${hydra:...} (the run folder) resolves only inside the job and is left to it."""
    monkeypatch.setenv("LITLAB_TEST_DATA", "/tmp/somewhere")
    cfg = check_overrides(["data=imagefolder", "data.root=${oc.env:LITLAB_TEST_DATA}", "test=false"], "train")
    assert cfg.data.root == "/tmp/somewhere" and cfg.test is False


def test_a_variable_of_the_slurm_nodes_is_left_to_the_jobs(monkeypatch):
    """${oc.env:SLURM_TMPDIR} exists on the compute node only: a SLURM sweep from the login node was
    refused; a local run still names it."""
    import litlab.config_check as config_check

    monkeypatch.setattr(config_check.shutil, "which", lambda name: "/usr/bin/sbatch")
    root = "data.root=${oc.env:LITLAB_TEST_UNSET_VARIABLE}/digits"
    assert check_overrides(["-m", "hydra/launcher=submitit_slurm", "data=imagefolder", root, "seed=1,2"]) is None
    with pytest.raises(LitlabError, match=r"Environment variable 'LITLAB_TEST_UNSET_VARIABLE' not found"):
        check_overrides(["-m", "hydra/launcher=submitit_local", "data=imagefolder", root, "seed=1,2"])
