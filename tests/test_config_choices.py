"""Config-group choices on the command line are checked before Hydra starts, in every Hydra form."""

from __future__ import annotations

import pytest

from litlab.config_check import check_choices
from litlab.errors import LitlabError


@pytest.mark.parametrize("argv", [["logger=tensorboard"], ["-m", "model=mlp,cnn"], ["logger=[csv,tensorboard]"],
                                  ["logger=null"], ["trainer=cpu"]])
def test_existing_choices_pass(argv):
    check_choices(argv)


@pytest.mark.parametrize("argv, named", [(["logger=[csv,tensorbord]"], "logger=tensorbord"),
                                         (["-m", "model=mlp,transformer"], "model=transformer")])
def test_a_missing_choice_is_named(argv, named):
    with pytest.raises(LitlabError, match=rf"{named} is not a choice: conf/\w+/ has"):
        check_choices(argv)
