"""litlab's default profiler records nothing; a real one is still a config override away."""

from __future__ import annotations

from lightning.pytorch.profilers import SimpleProfiler

from litlab.build import build_trainer
from litlab.no_profiler import NoProfiler


def test_default_trainer_gets_the_free_profiler(cfg_factory):
    trainer = build_trainer(cfg_factory([]), [], [])
    assert isinstance(trainer.profiler, NoProfiler)
    first, second = trainer.profiler.profile("a"), trainer.profiler.profile("b")
    assert first is second
    with first as entered:
        assert entered is None


def test_a_configured_profiler_is_kept(cfg_factory):
    trainer = build_trainer(cfg_factory(["+trainer.profiler=simple"]), [], [])
    assert isinstance(trainer.profiler, SimpleProfiler)
