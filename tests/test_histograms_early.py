"""``logger.histograms=true`` where nothing would write them, refused on the command line
(collection_entries.check_histograms_early): it was refused only as the run was built, after
Hydra made the run's folder. A user's callback class is left to the build-time check."""

from __future__ import annotations

import pytest

from litlab.collection_entries import check_histograms
from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from tests.conftest import refused_before_torch


@pytest.mark.parametrize("args, said", [
    (["logger=[csv,tensorboard]", "callbacks=none", "logger.histograms=true"],
     "Error: logger.histograms=true is written by callbacks.weight_histograms, which this run leaves out"),
    (["-m", "seed=1,2", "logger=tensorboard", "callbacks=none", "logger.histograms=true"],
     "Error: logger.histograms=true is written by callbacks.weight_histograms, which this run leaves out"),
    (["logger=none", "+logger.histograms=true"],
     "Error: logger.histograms=true writes weight histograms into TensorBoard, and this run has no TensorBoard"),
])
def test_histograms_nothing_would_write_are_refused_before_torch_and_any_folder(tmp_path, args, said):
    folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    stderr = refused_before_torch("litlab.train", [*args, *folders], cwd=tmp_path)
    assert said in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_callback_of_the_users_own_is_left_to_the_build_time_check(cfg_factory, tmp_path):
    """callbacks=none plus a class of the user's own: which class it is needs an import, so the
    command line lets it through and the run's own check (with Lightning) decides."""
    from litlab.collection_entries import check_histograms_early

    args = ["logger=tensorboard", "logger.histograms=true", "callbacks=none",
            "+callbacks.mine._target_=lightning.pytorch.callbacks.Timer"]
    check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    cfg = cfg_factory(args)
    check_histograms_early(cfg)
    with pytest.raises(LitlabError, match="is written by callbacks.weight_histograms, which this run leaves out"):
        check_histograms(cfg)


def test_histograms_with_the_default_callbacks_pass_the_command_line(tmp_path):
    check_overrides(["logger=[csv,tensorboard]", "logger.histograms=true", f"hydra.run.dir={tmp_path / 'run'}"])
