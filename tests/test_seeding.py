"""litlab's seed_everything draws exactly Lightning's numbers, without queuing device seedings."""

from __future__ import annotations

import linecache
import os
import random

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from litlab.errors import LitlabError
from litlab.seeding import seed_everything


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.randperm(10).tolist()


def test_cpu_only_seeding_draws_what_lightning_draws(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    assert seed_everything(123, cpu_only=True) == 123
    ours = _draws()
    assert os.environ["PL_GLOBAL_SEED"] == "123" and os.environ["PL_SEED_WORKERS"] == "1"
    L.seed_everything(123, workers=True, verbose=False)
    assert ours == _draws()


def test_cpu_only_seeding_reads_no_source_files():
    linecache.clearcache()
    seed_everything(5, cpu_only=True)
    assert linecache.cache == {}  # torch.manual_seed would have formatted stacks for unused devices


def test_with_an_accelerator_it_is_lightnings_seed_everything(monkeypatch):
    calls = []
    monkeypatch.setattr(L, "seed_everything", lambda seed, workers, verbose: calls.append((seed, workers)) or seed)
    assert seed_everything(9, cpu_only=False) == 9
    assert calls == [(9, True)]


def test_this_cpu_machine_has_no_accelerator_and_cuda_stays_uninitialized():
    from litlab.seeding import accelerator_present

    if torch.cuda.device_count() > 0:
        pytest.skip("a CUDA device is visible")
    assert accelerator_present() is False
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("seed", ["abc", -1, 2**32, True, None, 1.5])
@pytest.mark.parametrize("cpu_only", [True, False])
def test_a_seed_that_is_not_a_usable_integer_names_the_key(seed, cpu_only):
    """``seed=abc`` used to end in a ValueError traceback printed twice."""
    with pytest.raises(LitlabError, match=r"^seed must be an integer in \[0, 2\*\*32\)"):
        seed_everything(seed, cpu_only=cpu_only)
