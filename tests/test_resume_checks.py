"""Resuming (litlab.resume): the data a resume compares, in which order, and what a refusal advises."""

from __future__ import annotations

import json
import logging
import shlex

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from litlab.errors import LitlabError
from litlab.resume import check_same_data, check_something_left
from litlab.training import run_record, train
from tests.conftest import run_cli
from tests.helpers import write_image_folder, write_npz

# a tiny, quick run on an npz file (1x6x6 inputs, 3 classes)
NPZ_RUN = ["model=mlp", "data=npz", "trainer.max_epochs=1", "logger=none", "test=false"]


class _NoData:
    """A data module's ``describe()`` for a run record without data."""

    def describe(self) -> dict:
        return {}


def test_a_relative_data_location_is_the_place_the_checkpoint_recorded(cfg_factory, tmp_path, monkeypatch, caplog):
    """Every resume from the run's own folder warned "resuming on the run's data from another place
    (data.root /abs/data/digits in the checkpoint, ./data/digits here)": the record holds it absolute."""
    monkeypatch.chdir(tmp_path)
    cfg = cfg_factory(["data=npz", "data.path=./a.npz"])
    ckpt = {"litlab": run_record(cfg, _NoData())}
    assert ckpt["litlab"]["config"]["data"]["path"] == str(tmp_path / "a.npz")
    with caplog.at_level(logging.WARNING, logger="litlab.resume"):
        for spelled in ("./a.npz", "a.npz", str(tmp_path / "a.npz")):
            check_same_data(cfg_factory(["data=npz", f"data.path={spelled}"]), ckpt, "x.ckpt", {})
    assert not [r for r in caplog.records if "another place" in r.getMessage()]
    # data that lies elsewhere is still named, both sides absolute
    with caplog.at_level(logging.WARNING, logger="litlab.resume"):
        check_same_data(cfg_factory(["data=npz", "data.path=copy/a.npz"]), ckpt, "x.ckpt", {})
    (warning,) = [r.getMessage() for r in caplog.records if "another place" in r.getMessage()]
    assert f"data.path {tmp_path / 'a.npz'} in the checkpoint, {tmp_path / 'copy' / 'a.npz'} here" in warning


def test_a_resume_on_other_data_blames_the_data_and_prepares_none(cfg_factory, tmp_path):
    """A resume that forgot the run's data=npz, or gave data of other classes or another shape, was
    refused as "belongs to a different model ... Use the same model=... settings", after writing the
    default digits dataset."""
    data = write_npz(tmp_path / "a.npz")
    train(cfg_factory([*NPZ_RUN, f"data.path={data}"], name="r"))
    record = (tmp_path / "r" / "metrics.json").read_bytes()
    fresh = tmp_path / "fresh"  # where the default digits would be written
    with pytest.raises(LitlabError, match=r"but the data differs \(data\._target_ litlab\.data\.npz\.NpzDataModule in "
                                          r"the checkpoint, litlab\.data\.digits\.DigitsDataModule here; .*Resume with "
                                          r"the run's own data settings \(its \.hydra/overrides\.yaml lists them\)"):
        train(cfg_factory(["model=mlp", "trainer.max_epochs=2", "ckpt_path=last", f"paths.data_dir={fresh}"],
                          name="r"))
    assert not fresh.exists()
    for other, differs in (
            (write_npz(tmp_path / "four.npz", num_classes=4),
             r"the classes \['0', '1', '2'\] in the checkpoint, \['0', '1', '2', '3'\] here"),
            (write_npz(tmp_path / "flat.npz", kind="flat"),
             r"the sample shape \[1, 6, 6\] in the checkpoint, \[1, 12\] here")):
        with pytest.raises(LitlabError, match=rf"but the data differs \({differs}\); the run's record would mix two"):
            train(cfg_factory([*NPZ_RUN, "trainer.max_epochs=2", f"data.path={other}", "ckpt_path=last"], name="r"))
    assert (tmp_path / "r" / "metrics.json").read_bytes() == record
    # another model on the run's own data is still the model's fault
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    with pytest.raises(LitlabError, match=r"belongs to a different model"):
        train(cfg_factory([*NPZ_RUN, "model=cnn", f"data.path={data}", f"ckpt_path={last}"], name="cnn"))


def test_a_resume_keeps_the_checkpoints_normalization(cfg_factory, tmp_path):
    """data.in_memory=false estimates mean and std from 512 streamed training images, true from all
    of them: a resume that switched it went on training under another normalization (checkpoint
    mean 0.487862, resumed 0.487897) and recorded that one."""
    root = write_image_folder(tmp_path / "imgs", splits=("train",), per_class=172)  # 516 > 512 training images
    write_image_folder(root, splits=("val", "test"), per_class=2, seed=1)
    args = ["model=mlp", "data=imagefolder", f"data.root={root}", "data.num_workers=0", "data.batch_size=128",
            "logger=none", "test=false"]
    train(cfg_factory([*args, "data.in_memory=true", "trainer.max_epochs=1"], name="n"))
    last = tmp_path / "n" / "checkpoints" / "last.ckpt"
    trained = torch.load(last, weights_only=True)["litlab"]["data"]["preprocess"]
    train(cfg_factory([*args, "data.in_memory=false", "trainer.max_epochs=2", "ckpt_path=last"], name="n"))
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 1
    assert (resumed["litlab"]["data"]["preprocess"]["mean"], resumed["litlab"]["data"]["preprocess"]["std"]) == (
        trained["mean"], trained["std"])


def _finished_run(run_dir, overrides: list[str], compress: dict) -> dict:
    """A completed one-epoch run's record on disk, and its checkpoint's contents (as far as read)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "metrics.json").write_text(json.dumps({"status": "completed"}))
    return {"loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 1}}}},
            "litlab": {"config": {"compress": compress}}}


def test_compressing_a_finished_run_says_to_train_it_again_with_compress(cfg_factory, tmp_path):
    """ckpt_path=<finished run>/checkpoints/last.ckpt compress=prune was told to raise
    trainer.max_epochs or to test it with litlab.eval, neither of which gives a pruned model."""
    run = tmp_path / "done"
    ckpt = _finished_run(run, ["model=mlp", "seed=3", "trainer.max_epochs=1", "compress=quantize"], {})
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=1", f"ckpt_path={run}/checkpoints/last.ckpt",
                       "compress=prune", "compress.amount=0.5"], name="new")
    with pytest.raises(LitlabError) as e:
        check_something_left(cfg, ckpt, run)
    message = str(e.value)
    assert f"the run in {run} is completed (1 epoch(s)), so nothing is left to train, and compression runs only at " \
           f"the end of a training run: a resume cannot compress a finished model" in message
    assert "Run the job's overrides again with compress=prune compress.amount=0.5, in a new folder; with the same " \
           "seed it trains the same model again, then compresses it" in message
    # the run's own overrides, its compress replaced by this one, and no resume: a new folder
    assert message.endswith(": python -m litlab.train model=mlp seed=3 trainer.max_epochs=1 compress=prune "
                            "compress.amount=0.5")
    # a run whose overrides are not on record: the placeholder, then the compression asked for
    (run / ".hydra" / "overrides.yaml").unlink()
    with pytest.raises(LitlabError, match=r": python -m litlab\.train <the run's overrides> compress=prune "
                                          r"compress\.amount=0\.5$"):
        check_something_left(cfg, ckpt, run)
    # the run's own compression (done at its end): the usual advice
    own = OmegaConf.to_container(cfg.compress, resolve=True)
    with pytest.raises(LitlabError, match=r"so nothing is left to train\. Raise trainer\.max_epochs to train on"):
        check_something_left(cfg, {**ckpt, "litlab": {"config": {"compress": own}}}, run)
    # an export the run did not make: the same, for the export
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=1", "ckpt_path=last", "export=onnx"], name="done")
    with pytest.raises(LitlabError, match=r"and export runs only at the end of a training run: a resume cannot export "
                                          r"a finished model\. Run the job's overrides again with export=onnx, in a "
                                          r"new folder; .* then exports it: python -m litlab\.train <the run's "
                                          r"overrides> export=onnx$"):
        check_something_left(cfg, ckpt, run)


def _as_older_litlab(path, to):
    """The checkpoint ``path`` as a litlab that did not save the training loader's position wrote
    it (no ``combined_loader`` in the fit loop's state), at ``to``."""
    ckpt = torch.load(path, weights_only=True)
    del ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    torch.save(ckpt, to)
    return to


def test_a_run_stopped_in_its_first_epoch_resumes_from_a_mid_epoch_best_only_with_the_loaders_position(
        cfg_factory, tmp_path, caplog):
    """Without last.ckpt, ckpt_path=last falls back to best.ckpt (a kill while the first last.ckpt
    was written). A best.ckpt from a validation within the first epoch holds the training loader's
    position and continues that epoch; one of an older litlab, without it, would restart the epoch's
    data at its first batch with the batches done counted, and is refused, as the fallback and when
    named."""
    path = write_npz(tmp_path / "a.npz", n=300)
    run = [*NPZ_RUN, f"data.path={path}", "data.batch_size=16", "+trainer.val_check_interval=0.5"]
    train(cfg_factory(run))
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "last.ckpt").unlink()
    best = checkpoints / "best.ckpt"
    mine = best.read_bytes()
    step = torch.load(best, weights_only=True)["global_step"]
    assert 0 < step < 19  # 19 batches, validated after the 9th and the 18th
    old = _as_older_litlab(best, tmp_path / "old.ckpt")
    with pytest.raises(LitlabError, match=rf"ckpt_path={old} was written within epoch 0 after "
                                          rf"{step} batches, without the training data's position in the epoch"):
        train(cfg_factory([*run, f"ckpt_path={old}"], name="named"))
    _as_older_litlab(best, best)
    with pytest.raises(LitlabError, match=r"has no last\.ckpt, as the run stopped before its first epoch ended"):
        train(cfg_factory([*run, "ckpt_path=last"]))
    best.write_bytes(mine)
    with caplog.at_level(logging.WARNING, logger="litlab.resume"):
        train(cfg_factory([*run, "ckpt_path=last"]))
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 19
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["global_step"] == 19
    # an epoch-end best.ckpt is still the fallback
    train(cfg_factory([f"data.path={path}", *NPZ_RUN], name="whole"))
    (tmp_path / "whole" / "checkpoints" / "last.ckpt").unlink()
    with caplog.at_level(logging.WARNING, logger="litlab.resume"):
        train(cfg_factory([f"data.path={path}", *NPZ_RUN, "trainer.max_epochs=2", "ckpt_path=last"], name="whole"))
    assert any("is missing (the run was stopped while writing it)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("own_config", [False, True])
def test_ckpt_path_last_into_a_timestamped_folder_is_refused(own_config, tmp_path, monkeypatch):
    """ckpt_path=last without hydra.run.dir would resume from a new, empty folder. A run folder of
    the user's own config timestamped through another key (``dir: outputs/${stamp}``) passed the
    check, which looked for ``${now:`` in hydra.run.dir's own text only."""
    from litlab.config_check import check_overrides

    monkeypatch.chdir(tmp_path)
    argv = ["ckpt_path=last"]
    if own_config:
        (tmp_path / "my_conf").mkdir()
        (tmp_path / "my_conf" / "mytrain.yaml").write_text(
            "defaults:\n  - train\n  - _self_\nstamp: ${now:%H-%M-%S}\nhydra:\n  run:\n    dir: outputs/${stamp}\n")
        argv = ["--config-dir", "my_conf", "--config-name", "mytrain", *argv]
    with pytest.raises(LitlabError, match=r"ckpt_path=last resumes the run in the folder given by hydra\.run\.dir"):
        check_overrides(argv)
    assert not (tmp_path / "outputs").exists()


def test_other_optimizer_settings_are_refused_before_the_data_is_prepared(cfg_factory, tmp_path):
    """The optimizer and schedule settings need the config and the checkpoint alone, but were
    compared after the data was prepared (written, downloaded). Another net is still told as "a
    different model" once it is built, not by the optimizer settings that come with it (resnet18
    trains at another learning rate)."""
    from litlab.resume import open_resume

    cfg = cfg_factory(["model=mlp"], name="trained")
    ckpt = tmp_path / "mlp.ckpt"
    torch.save({"litlab": run_record(cfg, _NoData()), "state_dict": {}}, ckpt)
    for overrides, match in (
            (["model=mlp", "model.optimizer.lr=1e-4"],
             r"\(model\.optimizer\.lr 0\.003 in the checkpoint, 0\.0001 here\) would be recorded but never applied"),
            (["model=mlp", "model.scheduler_interval=step"],
             r"model\.scheduler_interval epoch in the checkpoint, step here"),
            # a warm-up restarted (or cut short) from the checkpoint's step
            (["model=mlp", "model.warmup_epochs=1"], r"model\.warmup_epochs 0 in the checkpoint, 1 here")):
        with pytest.raises(LitlabError, match=match):
            open_resume(cfg_factory([*overrides, f"ckpt_path={ckpt}"]), tmp_path / "run")
    open_resume(cfg_factory(["model=resnet18", f"ckpt_path={ckpt}"]), tmp_path / "run")


def _warmup_checkpoint(cfg, schedule_steps: int | None = None) -> dict:
    """A checkpoint of the run ``cfg`` taken at optimizer step 4 of a warm-up of 6 steps counted in
    epochs of 6 optimizer steps, or (``schedule_steps``) with a schedule converted to steps instead."""
    from litlab.tasks.optimizers import STEPS_PER_EPOCH_KEY
    from litlab.tasks.schedules import WARMUP_STEPS_KEY

    ckpt = {"global_step": 4, "litlab": run_record(cfg, _NoData())}
    if schedule_steps is None:
        ckpt["callbacks"] = {"LearningRateClock": {WARMUP_STEPS_KEY: 6, STEPS_PER_EPOCH_KEY: 6}}
    else:
        ckpt["lr_schedulers"] = [{STEPS_PER_EPOCH_KEY: schedule_steps}]
    return ckpt


def test_settings_that_give_epochs_as_many_steps_resume_and_both_refusals_read_alike(cfg_factory):
    """+trainer.limit_train_batches=1.0 (every batch, as the checkpoint's absent one) was refused as
    "absent in the checkpoint, 1.0 here", so was an explicit accumulate_grad_batches=1 or
    num_nodes=1; each is the run's own count of steps. limit_train_batches=1 (one batch) is another.
    The refusal before anything is written and the one when training starts (another size of the
    data) differed in wording and advice: they now differ only in what they found."""
    from litlab.resume_settings import check_same_steps_per_epoch
    from litlab.tasks.schedules import check_same_warmup

    cfg = cfg_factory(["model.warmup_epochs=1"], name="trained")
    same = cfg_factory(["model.warmup_epochs=1", "+trainer.limit_train_batches=1.0",
                        "+trainer.accumulate_grad_batches=1", "+trainer.num_nodes=1"])
    for schedule_steps in (None, 6):
        check_same_steps_per_epoch(same, _warmup_checkpoint(cfg, schedule_steps), "a.ckpt")
    other = cfg_factory(["model.warmup_epochs=1", "+trainer.limit_train_batches=1"])
    with pytest.raises(LitlabError) as info:
        check_same_steps_per_epoch(other, _warmup_checkpoint(cfg), "a.ckpt")
    found = "another number of optimizer steps (trainer.limit_train_batches absent in the checkpoint, 1 here)"
    assert str(info.value) == (
        f"ckpt_path=a.ckpt was taken at optimizer step 4 of the run's learning-rate warm-up of 6 steps "
        f"(model.warmup_epochs), whose length counts the run's epochs of 6 optimizer steps; here an epoch would have "
        f"{found}, so the warm-up would end at another point of the run. Resume with the run's own data.batch_size, "
        f"trainer.devices, trainer.num_nodes, trainer.accumulate_grad_batches and trainer.limit_train_batches, on the "
        f"same data (from a checkpoint past the warm-up they may change), or train a new run.")
    with pytest.raises(LitlabError) as at_start:
        check_same_warmup(_warmup_checkpoint(cfg)["callbacks"]["LearningRateClock"], 4, 12, "ckpt_path=a.ckpt")
    assert str(at_start.value) == str(info.value).replace(found, "12 optimizer steps")
    with pytest.raises(LitlabError, match=r"^ckpt_path=a\.ckpt holds a learning-rate schedule stepped per optimizer "
                                          r"step \(model\.scheduler_interval=step\), whose periods count the run's "
                                          r"epochs of 6 optimizer steps; here an epoch would have another number of "
                                          r"optimizer steps \(trainer\.limit_train_batches absent in the checkpoint, 1 "
                                          r"here\), so the schedule would end at another point of the run\. Resume "
                                          r"with the run's own data\.batch_size, .*, on the same data, or train a new "
                                          r"run\.$"):
        check_same_steps_per_epoch(other, _warmup_checkpoint(cfg, 6), "a.ckpt")


# a run within its warm-up after one epoch: 4 optimizer steps per epoch, 12 of warm-up
WARMING = ["model=mlp", "data=synthetic", "data.num_train=128", "data.num_val=32", "data.num_test=32",
           "data.batch_size=32", "model.warmup_epochs=3", "logger=none", "test=false"]


@pytest.mark.parametrize("trained, resumed", [("trainer.devices=1", "~trainer.devices"),
                                              ("trainer.devices=1", "trainer.devices=auto"),
                                              ("~trainer.devices", "trainer.devices=1")])
def test_a_resume_within_the_warm_up_counts_processes_not_how_devices_is_written(cfg_factory, tmp_path, trained,
                                                                                  resumed):
    """On the CPU, an absent trainer.devices (Lightning's auto) and auto are one process, as 1 is:
    an epoch has as many optimizer steps. The resume compared the values as written and refused
    ("trainer.devices 1 in the checkpoint, absent here") a run that would train the same steps."""
    train(cfg_factory([*WARMING, "trainer.max_epochs=1", trained]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["status"], metrics["epochs"], metrics["global_step"]) == ("completed", 1, 4)
    train(cfg_factory([*WARMING, "trainer.max_epochs=2", "ckpt_path=last", resumed]))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["status"], metrics["epochs"], metrics["global_step"]) == ("completed", 2, 8)


def test_another_process_count_within_the_warm_up_is_refused_by_its_count(cfg_factory):
    """The checkpoint's process count is the one its training data's position records; a run of
    2 processes resumed in 1 has epochs of twice the optimizer steps. Without that record (an older
    checkpoint) an auto of an unknown machine is compared as written."""
    from litlab.resume_settings import check_same_steps_per_epoch

    cfg = cfg_factory(["model.warmup_epochs=1"], name="trained")
    ckpt = _warmup_checkpoint(cfg)
    ckpt["loops"] = {"fit_loop": {"state_dict": {"combined_loader": [{"epoch": 0, "world_size": 2}]}}}
    with pytest.raises(LitlabError, match=r"another number of optimizer steps \(trainer\.devices x trainer\.num_nodes "
                                          r"= 2 process\(es\) in the checkpoint, 1 here\)"):
        check_same_steps_per_epoch(cfg_factory(["model.warmup_epochs=1", "trainer.devices=auto"]), ckpt, "a.ckpt")
    older = _warmup_checkpoint(cfg_factory(["model.warmup_epochs=1", "trainer.devices=auto"], name="auto"))
    with pytest.raises(LitlabError, match=r"\(trainer\.devices auto in the checkpoint, 1 here\)"):
        check_same_steps_per_epoch(cfg_factory(["model.warmup_epochs=1"]), older, "a.ckpt")


def test_an_older_checkpoint_with_devices_as_a_string_is_counted_in_processes(cfg_factory):
    """A checkpoint without its data's position counts its processes from its config: a stored
    trainer.devices "2" (a string) was compared as written, so "1" resumed with 1 was refused as
    another number of steps, and "2" was not told as 2 processes."""
    from litlab.resume_settings import check_same_steps_per_epoch

    cfg = cfg_factory(["model.warmup_epochs=1", "trainer.devices=1"])
    for stored in ("1", " 1"):
        ckpt = _warmup_checkpoint(cfg)
        ckpt["litlab"]["config"]["trainer"]["devices"] = stored
        check_same_steps_per_epoch(cfg, ckpt, "a.ckpt")
    ckpt["litlab"]["config"]["trainer"]["devices"] = "2"
    with pytest.raises(LitlabError, match=r"another number of optimizer steps \(trainer\.devices x trainer\.num_nodes "
                                          r"= 2 process\(es\) in the checkpoint, 1 here\)"):
        check_same_steps_per_epoch(cfg, ckpt, "a.ckpt")


def test_a_resume_with_another_seed_is_refused_and_the_runs_own_seed_resumes(tmp_path):
    """Resuming a finished epoch (an interrupted sweep job, say) with another seed= was taken, and
    the run's record then named the new seed (.hydra/overrides.yaml, summarize --average-over seed)
    for weights initialized and shuffled from the first: refused before anything is written, with
    the command that resumes the run under its own seed."""
    data = write_npz(tmp_path / "a.npz")
    run = tmp_path / "job"
    args = ["model=mlp", "data=npz", f"data.path={data}", "trainer.accelerator=cpu", "logger=none", "test=false",
            f"hydra.run.dir={run}"]
    done = run_cli("litlab.train", *args, "seed=5", "trainer.max_epochs=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = {p: p.read_bytes() for p in (run / "metrics.json", run / ".hydra" / "overrides.yaml",
                                          run / "checkpoints" / "last.ckpt")}
    refused = run_cli("litlab.train", *args, "seed=7", "trainer.max_epochs=2", "ckpt_path=last", cwd=tmp_path)
    assert refused.returncode != 0
    message = " ".join(refused.stderr.split("Error: ", 1)[1].split())
    assert message.startswith(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'} was trained with seed=5, and this "
                              f"command has seed=7: ")
    assert "a resume under seed=7 would record the whole run as seed 7's (.hydra/overrides.yaml" in message
    command = message.split("Resume with the run's own seed: ", 1)[1].split(". For a run of seed 7", 1)[0]
    assert command.startswith("python -m litlab.train model=mlp data=npz ")
    assert command.endswith(f" trainer.max_epochs=2 seed=5 ckpt_path=last hydra.run.dir={run}")
    assert {p: p.read_bytes() for p in record} == record  # the run's record as it was
    assert not list((run / ".hydra").glob("start-*"))
    # the command given resumes the run under its own seed
    resumed = run_cli(*shlex.split(command)[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert "seed=5" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
