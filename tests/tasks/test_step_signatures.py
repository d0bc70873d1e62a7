"""The classifier's step methods carry stored signatures (Lightning reads them on every batch)."""

from __future__ import annotations

import inspect

import pytest

from litlab.tasks.classification import Classifier


@pytest.mark.parametrize("name", ["training_step", "validation_step", "test_step", "predict_step"])
def test_stored_signature_is_the_methods_own(name):
    fn = vars(Classifier)[name]
    stored = fn.__signature__
    del fn.__signature__
    try:
        assert stored == inspect.signature(fn)  # what inspect derives from the code
    finally:
        fn.__signature__ = stored


def test_lightning_sees_batch_idx_and_no_dataloader_iter():
    from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

    step = Classifier.training_step
    assert is_param_in_hook_signature(step, "batch_idx", min_args=2)
    assert not is_param_in_hook_signature(step, "dataloader_iter", explicit=True)
    assert inspect.getfullargspec(step).args == ["self", "batch", "batch_idx"]
