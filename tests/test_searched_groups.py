"""A search over a config group (``hydra.sweeper.params: {model: choice(cnn,mlp)}``;
``searched_groups.py``): a key given to every trial that one searched choice's class does not take
is refused before any trial, with the grid's advice (``-m model=cnn,mlp``), not in that choice's
trials after their data is prepared."""

from __future__ import annotations

import shlex

import pytest

from litlab.choice_files import composed_with
from litlab.config_check import check_overrides
from litlab.config_flags import Primary
from litlab.errors import LitlabError
from tests.helpers import write_search

# an Optuna search (the shipped one, with the model searched too) and the basic sweeper's params
SEARCHES = {
    "optuna": "# @package _global_\ndefaults:\n  - digits_optuna\nhydra:\n  sweeper:\n    params:\n"
              "      model: choice({options})\n",
    "grid": "# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: {options}\n",
}


def _search(tmp_path, kind: str, options: str = "cnn,mlp"):
    """A --config-dir whose hparams_search/models.yaml searches ``model`` over ``options``."""
    return write_search(tmp_path / f"own_{kind}_{options.replace(',', '_')}", "models",
                        SEARCHES[kind].format(options=options))


def _refusal(argv: list[str]) -> str:
    with pytest.raises(LitlabError) as e:
        check_overrides(argv)
    return str(e.value)


@pytest.mark.parametrize("kind", ["optuna", "grid"])
def test_a_key_only_one_searched_model_takes_is_refused_before_any_trial(kind, tmp_path):
    """Before: only the default job (model=cnn) was checked; the MLP trials failed when the model was
    built (MLP has no argument channels), after their data was prepared."""
    own, folder = _search(tmp_path, kind), tmp_path / "sweep"
    message = _refusal(["-m", "--config-dir", str(own), "hparams_search=models", "++model.net.channels=[8]",
                        f"hydra.sweep.dir={folder}"])
    assert message.startswith("++model.net.channels=[8] is given to every job of the sweep, but only model=cnn of "
                              "the sweep takes net.channels: the job with model=mlp would fail when model is built")
    again = f"python -m litlab.train --config-dir={own} -m hparams_search=models hydra.sweep.dir={folder}"
    assert message.endswith(f"Sweep them separately: {again}-cnn model=cnn '++model.net.channels=[8]', then "
                            f"{again}-mlp model=mlp.")
    assert not folder.exists()


def test_the_refusal_is_the_grids_for_the_same_choices(tmp_path):
    searched = _refusal(["-m", "--config-dir", str(_search(tmp_path, "optuna")), "hparams_search=models",
                         "++model.net.channels=[8]"])
    grid = _refusal(["-m", "hparams_search=digits_optuna", "model=cnn,mlp", "++model.net.channels=[8]"])
    assert searched.split(" Sweep them separately")[0] == grid.split(" Sweep them separately")[0]


@pytest.mark.parametrize("kind", ["optuna", "grid"])
def test_the_advised_separate_searches_pass(kind, tmp_path):
    message = _refusal(["-m", "--config-dir", str(_search(tmp_path, kind)), "hparams_search=models",
                        "++model.net.channels=[8]", f"hydra.sweep.dir={tmp_path / 's'}"])
    for command in message.split("Sweep them separately: ", 1)[1].rstrip(".").split(", then "):
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "litlab.train"]
        assert check_overrides(words[3:]) is None


@pytest.mark.parametrize("kind", ["optuna", "grid"])
def test_a_key_one_searched_model_lacks_is_refused_with_separate_searches(kind, tmp_path):
    """model.net.hidden_size=8 (no +): CNN has it, MLP's trial does not compose. Before: the MLP choice
    was left out of the checks silently, and the search died in Hydra's error at the MLP trial."""
    own, folder = _search(tmp_path, kind), tmp_path / "sweep"
    message = _refusal(["-m", "--config-dir", str(own), "hparams_search=models", "model.net.hidden_size=8",
                        f"hydra.sweep.dir={folder}"])
    assert message.startswith("model.net.hidden_size=8 is given to every trial of the search, but only model=cnn of "
                              "it has model.net.hidden_size: the trial with model=mlp has no key "
                              "model.net.hidden_size")
    again = f"python -m litlab.train --config-dir={own} -m hparams_search=models hydra.sweep.dir={folder}"
    assert message.endswith(f"Sweep them separately: {again}-cnn model=cnn model.net.hidden_size=8, then "
                            f"{again}-mlp model=mlp.")
    for command in message.split("Sweep them separately: ", 1)[1].rstrip(".").split(", then "):
        assert check_overrides(shlex.split(command)[3:]) is None  # each advised search passes
    assert not folder.exists()


def test_a_key_every_searched_model_takes_passes(tmp_path):
    assert check_overrides(["-m", "--config-dir", str(_search(tmp_path, "optuna")), "hparams_search=models",
                            "++model.net.dropout=0.3", f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_the_default_choice_no_trial_makes_is_not_checked(tmp_path):
    """choice(mlp,gru) never trains the default model=cnn: hidden_sizes, which MLP takes and CNN and
    GRU do not, is refused for GRU's trials, and not for CNN, which runs none; with MLP alone it passes."""
    own = _search(tmp_path, "optuna", "mlp,gru")
    message = _refusal(["-m", "--config-dir", str(own), "hparams_search=models", "++model.net.hidden_sizes=[8]"])
    assert message.startswith("++model.net.hidden_sizes=[8] is given to every job of the sweep, but only model=mlp "
                              "of the sweep takes net.hidden_sizes: the job with model=gru would fail")
    assert "cnn" not in message
    own = _search(tmp_path, "optuna", "mlp")
    assert check_overrides(["-m", "--config-dir", str(own), "hparams_search=models", "++model.net.hidden_sizes=[8]",
                            f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_a_group_the_command_line_gives_is_not_searched(tmp_path):
    """Optuna drops a searched entry that the command line fixes: only MLP's trials run."""
    assert check_overrides(["-m", "--config-dir", str(_search(tmp_path, "optuna")), "hparams_search=models",
                            "model=mlp", "++model.net.hidden_sizes=[8]", f"hydra.sweep.dir={tmp_path / 's'}"]) is None


def test_searched_groups_are_choices_of_group_names_only(tmp_path):
    from litlab.searched_groups import searched_group_jobs, searched_groups

    own = write_search(tmp_path / "own", "mixed",
        "# @package _global_\ndefaults:\n  - digits_optuna\nhydra:\n  sweeper:\n    params:\n"
        "      model: tag(choice, choice(mlp, cnn, mlp))\n      data.batch_size: choice(32, 64)\n"
        "      seed: range(1, 3)\n")
    primary = Primary()
    cfg = composed_with(["hparams_search=mixed", f"hydra.searchpath=[file://{own}]"], primary)
    assert searched_groups(cfg, []) == {"model": ["mlp", "cnn"]}
    assert searched_groups(cfg, ["model=cnn"]) == {}
    jobs = searched_group_jobs(cfg, [], primary)
    assert [j.hydra.runtime.choices.model for j in jobs] == ["mlp", "cnn"]
    assert [list(j.hydra.overrides.task)[-1] for j in jobs] == ["model=mlp", "model=cnn"]
    assert [j.model.net._target_.rsplit(".", 1)[1] for j in jobs] == ["MLP", "CNN"]
    default = composed_with(["hparams_search=digits_optuna"], primary)
    assert searched_groups(default, []) == {}  # lr, weight decay and batch size: no group among them
    assert searched_group_jobs(default, [], primary) == []
