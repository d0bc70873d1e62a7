"""predict's ``temperature=<eval folder>`` read from records that hold no T it can take: an eval
that failed or was stopped, and an eval from before litlab recorded the checkpoint's sha256 beside
its T. No model is loaded: the refusals come first (``tuning.temperature_setting``,
``prediction.ensemble_checks``), so the checkpoints here are files of a few bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from litlab.errors import LitlabError
from litlab.prediction.ensemble_checks import eval_record_temperatures
from litlab.tuning.temperature_setting import checkpoint_fingerprint, eval_record_temperature
from tests.conftest import refused_before_torch

FAILED = "ckpt_path=gone.ckpt does not exist. Give the path of a checkpoint."


def _eval_folder(root: Path, name: str, record: dict) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def pair(tmp_path) -> list[Path]:
    """Two checkpoint files with other bytes (so other sha256)."""
    paths = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    for path, byte in zip(paths, b"ab"):
        path.write_bytes(bytes([byte]) * 32)
    return paths


@pytest.mark.parametrize("status, error, said", [
    ("failed", FAILED, f"it is the record of an eval that failed: {FAILED} Fix that and run it again"),
    ("interrupted", "interrupted by signal SIGINT",
     "it is the record of an eval stopped before it finished (interrupted by signal SIGINT). Run it again"),
])
def test_an_eval_that_did_not_finish_is_named_so(pair, tmp_path, status, error, said):
    folder = _eval_folder(tmp_path, status, {"task": "eval", "status": status, "error": error,
                                            "ckpt_path": str(pair[0])})
    with pytest.raises(LitlabError) as one:
        eval_record_temperature(folder, pair[0])
    with pytest.raises(LitlabError) as ensemble:
        eval_record_temperatures(folder, pair)
    for err in (one, ensemble):
        assert str(err.value).startswith(f"temperature={folder}: {folder / 'metrics.json'} records no temperature: "
                                         f"{said}."), str(err.value)
        assert "without temperature=" not in str(err.value)


def test_the_command_line_refuses_a_failed_eval_before_torch(pair, tmp_path):
    folder = _eval_folder(tmp_path, "failed", {"task": "eval", "status": "failed", "error": FAILED})
    npz = tmp_path / "x.npz"
    npz.write_bytes(b"")  # only its existence is checked before the model loads
    stderr = refused_before_torch("litlab.predict", [f"ckpt_path=[{pair[0]},{pair[1]}]", f"input={npz}",
                                                     f"temperature={folder}", f"hydra.run.dir={tmp_path / 'run'}"],
                                  tmp_path)
    assert f"it is the record of an eval that failed: {FAILED}" in stderr and "ckpt_path=None" not in stderr
    assert not (tmp_path / "run").exists()


def test_an_ensemble_given_an_eval_from_before_sha256_is_told_so(pair, tmp_path):
    """A single eval's T without ``ckpt_sha256``: the ensemble's refusal says what predict of the
    one checkpoint says, not that the eval was of other members or without temperature=."""
    t = {"value": 2.0, "fitted_on": "val", "ckpt_path": str(pair[0])}
    folder = _eval_folder(tmp_path, "old", {"task": "eval", "status": "completed", "ckpt_path": str(pair[0]),
                                            "temperature": t})
    with pytest.raises(LitlabError) as single:
        eval_record_temperature(folder, pair[0])
    assert "an eval from before litlab recorded them" in str(single.value)
    with pytest.raises(LitlabError) as ensemble:
        eval_record_temperatures(folder, pair)
    assert str(ensemble.value) == (
        f"temperature={folder}: {folder / 'metrics.json'} records no size and sha256 of the checkpoint its "
        f"temperature was fitted for ({pair[0]}; an eval from before litlab recorded them), so it cannot be told "
        f"whether a member ({pair[0]}, {pair[1]}) is that model. Give the folder of python -m litlab.eval with the "
        f"same members and temperature=auto, or a number (every member's T).")


def test_a_record_with_sha256_names_the_members_it_has_no_t_for(pair, tmp_path):
    """Where the record has T's with a sha256, a member it lacks is refused as before."""
    t = {"value": 2.0, "fitted_on": "val", "ckpt_path": str(pair[0]), **checkpoint_fingerprint(pair[0])}
    folder = _eval_folder(tmp_path, "one", {"task": "eval", "status": "completed", "ckpt_path": str(pair[0]),
                                            "temperature": t})
    with pytest.raises(LitlabError, match=rf"records no temperature for the checkpoint of member\(s\) {pair[1]} "
                                          rf"\(matched by sha256; it is the eval of ckpt_path={pair[0]}: "):
        eval_record_temperatures(folder, pair)


def test_a_recorded_path_is_shown_as_given():
    from litlab.tuning.temperature_setting import as_given  # public since ensemble_checks uses it too

    assert as_given("runs/a/checkpoints/best.ckpt") == "runs/a/checkpoints/best.ckpt"
    assert as_given(["a", "b", "c", "d", "e"]) == "[a, b, c and 2 more]"
