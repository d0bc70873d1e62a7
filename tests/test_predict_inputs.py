"""``predict`` reads npz arrays on the scale the model was trained on, or refuses them as eval does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litlab.data.preprocess import Preprocess
from litlab.errors import LitlabError
from litlab.prediction.inputs import read_npz


def test_uint8_images_for_a_model_of_float_images_are_refused_naming_the_file(tmp_path):
    """They reached the model 255x too large (every probability 1.000000) while eval refused
    the same data."""
    path = tmp_path / "pixels.npz"
    np.savez(path, x=np.full((2, 1, 4, 4), 200, np.uint8))
    with pytest.raises(LitlabError) as e:
        read_npz(path, (1, 4, 4), Preprocess("image", [0.5], [0.2], pixels=False))
    assert str(e.value) == (
        f"input={path}: x holds uint8 images, read as 8-bit pixels, but this checkpoint was trained on images of "
        f"another dtype, whose values reach it as they are; pixels 0..255 would be on another scale. Give arrays "
        f"of the training data's dtype, on the scale of the training arrays."
    )


def test_float_images_for_a_model_of_float_images_are_used_as_they_are(tmp_path):
    path = tmp_path / "floats.npz"
    x = np.linspace(-3, 300, 2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
    np.savez(path, x=x)
    _, got = read_npz(path, (1, 4, 4), Preprocess("image", [0.5], [0.2], pixels=False))
    assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(x))


def test_a_pixel_model_takes_uint8_and_floats_in_0_1_alike(tmp_path):
    pixels = np.arange(32, dtype=np.uint8).reshape(2, 1, 4, 4) * 8
    np.savez(tmp_path / "u8.npz", x=pixels)
    np.savez(tmp_path / "f.npz", x=pixels.astype(np.float32) / 255)
    pre = Preprocess("image", [0.5], [0.2], pixels=True)
    _, u8 = read_npz(tmp_path / "u8.npz", (1, 4, 4), pre)
    _, f = read_npz(tmp_path / "f.npz", (1, 4, 4), pre)
    assert u8.dtype == torch.uint8 and torch.equal(u8, torch.from_numpy(pixels))
    assert torch.allclose(f, u8.float() / 255)


def test_uint8_sequences_are_values_used_as_they_are(tmp_path):
    """Training reads a uint8 sequence array as its values (not pixels), and so does eval."""
    path = tmp_path / "seq.npz"
    np.savez(path, x=np.arange(12, dtype=np.uint8).reshape(2, 3, 2) * 20)
    _, got = read_npz(path, (3, 2), Preprocess("sequence", [0.0, 0.0], [1.0, 1.0], pixels=False))
    assert got.dtype == torch.float32 and got.max().item() == 220.0


def test_predict_names_a_missing_input_before_it_reads_the_checkpoint(cfg_factory, tmp_path):
    """A missing input= was found only after the model had loaded; the command line checks it before
    torch is imported (``prediction.path_checks``), and ``predict(cfg)`` in-process the same way: here
    the checkpoint file is not one, and is never read."""
    from litlab.prediction.run import predict

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    missing = tmp_path / "x.png"
    cfg = cfg_factory([f"ckpt_path={ckpt}", f"input={missing}"], name="pred", config_name="predict", fast=False)
    with pytest.raises(LitlabError) as e:
        predict(cfg)
    assert str(e.value) == f"input={missing} does not exist. Give an image file, a folder of images or an .npz file."
