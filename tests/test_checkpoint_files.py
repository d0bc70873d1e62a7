"""Reading checkpoints: what a wrong path or a file that is not a checkpoint says."""

from __future__ import annotations

import collections

import pytest
import torch

from litlab.checkpoint_files import load_checkpoint
from litlab.errors import LitlabError


def test_a_run_folder_is_named_as_a_folder_with_its_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"litlab": {}, "state_dict": {}}, run / "checkpoints" / "best.ckpt")
    with pytest.raises(LitlabError, match=r"ckpt_path=.*run is a folder, not a file; it holds .*best\.ckpt") as info:
        load_checkpoint(run)
    assert "does not exist" not in str(info.value)


def test_a_missing_file_names_both_kinds_of_file(tmp_path):
    with pytest.raises(LitlabError, match=r"does not exist\. Give the path of a litlab run's checkpoint .*"
                                          r"compressed model \(outputs/runs/<run>/compressed/<method>\.pt\)"):
        load_checkpoint(tmp_path / "best.ckpt")


class _Payload(collections.UserDict):
    """A pickled object of a class that is not a tensor or a plain value."""


@pytest.mark.parametrize("kind", ["object", "png", "truncated"])
def test_a_file_that_is_not_a_checkpoint_never_suggests_unsafe_loading(tmp_path, kind):
    path = tmp_path / "file.ckpt"
    if kind == "object":
        torch.save(_Payload(a=1), path)
    elif kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    else:
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(LitlabError, match=r"could not be read as a checkpoint") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only=False" not in message and "weights_only set to False" not in message
    assert "\n" not in message
    if kind == "object":
        assert "it holds objects other than tensors and plain values (" in message and "_Payload" in message
    else:  # not a pickle of the wrong classes: torch's own reason, not that one
        assert "objects other than tensors" not in message


def test_the_checkpoints_folder_itself_lists_its_files(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"litlab": {}, "state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(LitlabError, match=r"is a folder, not a file; it holds .*checkpoints/last\.ckpt"):
        load_checkpoint(tmp_path / "checkpoints")


def test_where_only_a_training_checkpoint_will_do_a_compressed_model_is_refused_by_name(tmp_path):
    """Resuming (or a distillation teacher) from a compressed model used to end in 'belongs to a
    different model', after a message that had suggested compressed models."""
    with pytest.raises(LitlabError) as info:
        load_checkpoint(tmp_path / "missing.ckpt", compressed_ok=False)
    assert "compressed" not in str(info.value)
    artifact = tmp_path / "prune.pt"
    torch.save({"litlab": {}, "state_dict": {}, "compression": {"method": "prune"}}, artifact)
    assert load_checkpoint(artifact)["compression"]["method"] == "prune"  # eval and predict take it
    with pytest.raises(LitlabError, match=r"prune\.pt is a compressed model \(prune\), which eval and predict take; "
                                          r"here a training checkpoint is needed"):
        load_checkpoint(artifact, compressed_ok=False)


def test_a_corrupt_last_ckpt_points_at_the_best_one_beside_it(tmp_path):
    """The quoted torch message was cut mid-sentence, and nothing said that best.ckpt was there."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"litlab": {}, "state_dict": {"w": torch.zeros(3)}}, folder / "best.ckpt")
    (folder / "last.ckpt").write_bytes((folder / "best.ckpt").read_bytes()[:300])
    with pytest.raises(LitlabError) as info:
        load_checkpoint(folder / "last.ckpt")
    message = str(info.value)
    assert f"The run's best.ckpt beside it may be intact: ckpt_path={folder / 'best.ckpt'} reads that one" in message
    reason = message.split("(", 1)[1].split("). The file", 1)[0]
    assert len(reason) < 260 and (reason.endswith(" ...") or len(reason) < 200), reason
    (tmp_path / "other.ckpt").write_bytes(b"x")  # no best.ckpt beside it: no hint
    with pytest.raises(LitlabError) as info:
        load_checkpoint(tmp_path / "other.ckpt")
    assert "beside it" not in str(info.value)
