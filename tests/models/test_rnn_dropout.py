"""LSTM/GRU dropout: checked whatever the layer count, and named when one layer cannot use it."""

from __future__ import annotations

import logging

import pytest

from litlab.errors import LitlabError
from litlab.models.rnn import RNN


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("dropout", [1.5, 1, -0.1, "0.2", True])
def test_dropout_outside_0_1_is_refused_whatever_the_layer_count(dropout, num_layers):
    """1.5 trained without a word on one layer, where the value was dropped unread."""
    with pytest.raises(LitlabError, match=r"model\.net\.dropout must be a number in \[0, 1\), got "):
        RNN((8, 2), 3, num_layers=num_layers, dropout=dropout)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dropout_on_one_layer_is_ignored_with_a_warning(cell, caplog):
    with caplog.at_level(logging.WARNING, logger="litlab.models.rnn"):
        net = RNN((8, 2), 3, cell=cell, num_layers=1, dropout=0.3)
    assert net.rnn.dropout == 0.0
    assert "model.net.dropout=0.3 is ignored" in caplog.text and "model.net.num_layers > 1" in caplog.text


def test_dropout_between_stacked_layers_is_used_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="litlab.models.rnn"):
        stacked = RNN((8, 2), 3, num_layers=2, dropout=0.3)
        RNN((8, 2), 3, num_layers=1, dropout=0.0)
    assert stacked.rnn.dropout == 0.3
    assert caplog.text == ""


@pytest.mark.parametrize("key,value", [("hidden_size", 0), ("num_layers", 0)])
def test_sizes_name_their_key(key, value):
    with pytest.raises(LitlabError, match=rf"model\.net\.{key} must be a positive integer, got 0"):
        RNN((8, 2), 3, **{key: value})


def test_the_command_line_names_model_net_dropout(cfg_factory):
    from litlab.training import train

    cfg = cfg_factory(["model=lstm", "data=synthetic_seq", "model.net.dropout=1.5"])
    with pytest.raises(LitlabError, match=r"model\.net\.dropout must be a number in \[0, 1\), got 1\.5") as err:
        train(cfg)
    assert "\n" not in str(err.value)
