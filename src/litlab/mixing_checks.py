"""Checks of the batch mixing settings (``mixing=none|mixup|cutmix|mixup_cutmix``, ``conf/mixing/``).

One set of checks for every way a run reaches them: the command line's, before Hydra makes the
run's folder (``config_check.check_overrides`` calls ``check_mixing``), and the mixing classes'
own (``tasks/batch_mixing.py``) when they are built, for a config that reaches ``train`` another
way. The data's sample shape is known for certain only once the data is set up (an ``.npz`` holds
images or sequences): ``build.build_mixing`` checks it there with ``check_image_samples``. No torch
here, so the command line is checked before torch is imported.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from litlab.errors import LitlabError

# the settings of the mixing classes of conf/mixing/, as the command line names them
SETTINGS = ("alpha", "mixup_alpha", "cutmix_alpha", "prob", "switch_prob")

# the classes that paste boxes of images, by ``_target_`` (the others blend any input), for the
# command line's check, which runs before torch is imported (batch_mixing imports it): the built
# mixers say it themselves (``pastes_boxes``); a test keeps the two in step
PASTES_BOXES = ("litlab.tasks.batch_mixing.CutMix", "litlab.tasks.batch_mixing.MixupOrCutMix")


def check_mixing(cfg: DictConfig) -> None:
    """``mixing=mixup/cutmix/mixup_cutmix``: its settings, and for CutMix data of images, checked
    before Hydra makes the run's folder. ``mixing=none`` (no ``_target_``) trains unmixed; a setting
    added to it (``+mixing.prob=0.5``) is refused by ``empty_choices``, as for every empty choice."""
    node = OmegaConf.select(cfg, "mixing", throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    for key in SETTINGS:
        if key in node:
            check_mixing_setting(key, node.get(key))
    if node.get("_target_") in PASTES_BOXES and OmegaConf.select(cfg, "data.kind", default=None) == "sequence":
        check_image_samples("sequences (data.kind=sequence)")


def check_mixing_setting(key: str, value: object) -> None:
    """``mixing.<key>``: an ``*alpha`` is a number > 0 (lam ~ Beta(alpha, alpha) needs one), a
    ``*prob`` a number in [0, 1]."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key.endswith("alpha") and not (number and value > 0):
        raise LitlabError(f"mixing.{key} must be a number > 0, got {value!r}: the mixing weight lam is drawn from "
                          f"Beta(alpha, alpha), which needs alpha > 0 (small values such as 0.2 keep lam near 0 or 1, "
                          f"mild mixing; 1.0 draws it uniformly). To train without mixing, use mixing=none.")
    if key.endswith("prob") and not (number and 0 <= value <= 1):
        what = ("the share of training batches mixed" if key == "prob" else
                "the share of mixed batches that take CutMix instead of mixup")
        raise LitlabError(f"mixing.{key} must be a number in [0, 1] ({what}), got {value!r}.")


def check_image_samples(sample: tuple[int, ...] | str) -> None:
    """CutMix pastes a box of one image into another: it needs samples of shape ``(C, H, W)``.
    ``sample``: the data's sample shape, or what the samples are where only the config is known."""
    if not isinstance(sample, str) and len(sample) == 3:
        return
    shown = sample if isinstance(sample, str) else f"of shape {tuple(sample)}"
    # an .npz's (N, H, W) images (no channel axis) are read as sequences (data/npz.py reads images
    # as (N, C, H, W) only): say how to store them, where the shape is known
    stored = ("" if isinstance(sample, str) else " For CutMix, store images as (N, C, H, W) (an .npz's (N, H, W) "
              "images are read as sequences of rows: store x[:, None]; (N, H, W, C): x.transpose(0, 3, 1, 2)).")
    raise LitlabError(f"mixing=cutmix and mixing=mixup_cutmix paste a box of one image into another, so they need "
                      f"image samples (C, H, W), and this data's samples are {shown}. Use mixing=mixup, which "
                      f"blends any input, or mixing=none.{stored}")
