"""Findings of a user trial in data, eval, predict and interruption: a missing data.root refused
before torch, eval's hint for a key the stored data module does not take, predict's top_k beyond
the class count, and the resume command of a run stopped outside Lightning's loops."""

from __future__ import annotations

import json
import logging
import os
import signal

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from litlab.config_check import check_overrides
from litlab.errors import LitlabError
from litlab.evaluation import stored_config
from litlab.reporting.run_files import update_metrics
from tests.conftest import make_cfg, refused_before_torch, run_cli
from tests.helpers import write_image_folder

NPZ_RUN = {"litlab": {"config": {"data": {"_target_": "litlab.data.npz.NpzDataModule", "path": "/d/a.npz",
                                          "batch_size": 8},
                                 "model": {"_target_": "litlab.tasks.classification.Classifier"}}}}


@pytest.mark.parametrize("module, args, message", [
    ("litlab.train", ["data=imagefolder"], "data.root is not set. Pass data.root=DIR"),
    ("litlab.train", ["data=npz", "data.path=no/such.npz"], "data.path=no/such.npz does not exist or is not a file"),
    ("litlab.train", ["data=imagefolder", "data.root=no/such/folder"], "data.root=no/such/folder is not a folder"),
    ("litlab.lr_find", ["data=npz"], "data.path is not set. Pass data.path=FILE.npz"),
])
def test_a_missing_data_location_is_refused_before_torch_and_no_folder_is_made(tmp_path, module, args, message):
    """The README's own Errors example took 7-11 s (torch, Lightning, the run's folder) and left a
    failed run folder; the data modules' own check is now made on the command line."""
    run = tmp_path / "run"
    stderr = refused_before_torch(module, [*args, f"hydra.run.dir={run}"], cwd=tmp_path)
    assert message in stderr
    assert not run.exists() and not (tmp_path / "outputs").exists()


def test_each_swept_data_location_and_the_cheap_data_values_are_checked(tmp_path):
    write_image_folder(tmp_path / "images", per_class=1)  # a usable train/ (its listing is checked)
    (tmp_path / "a.npz").write_bytes(b"")  # only its presence is checked before the run
    with pytest.raises(LitlabError, match=r"data.root=.*missing is not a folder"):
        check_overrides(["-m", "data=imagefolder", f"data.root={tmp_path / 'images'},{tmp_path / 'missing'}"])
    with pytest.raises(LitlabError, match=r"data.on_bad_file must be one of skip, fail, got 'maybe'"):
        check_overrides(["data=imagefolder", f"data.root={tmp_path / 'images'}", "data.on_bad_file=maybe"])
    with pytest.raises(LitlabError, match=r"data.val_fraction must be a number in \[0, 1\), got 1.5"):
        check_overrides(["data=npz", f"data.path={tmp_path / 'a.npz'}", "data.val_fraction=1.5"])
    # an existing folder, and data that needs no location, pass
    assert check_overrides(["data=imagefolder", f"data.root={tmp_path / 'images'}"]) is not None
    assert check_overrides(["data=synthetic"]) is not None
    # the digits are written under their data.root as they are prepared: a fresh folder is not refused
    assert check_overrides([f"paths.data_dir={tmp_path / 'fresh'}"]).data.root == f"{tmp_path / 'fresh'}/digits"


def _config_file(root, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


@pytest.mark.parametrize("file, space", [
    ("hparams_search/npz_search.yaml", "choice({a}, {b})"),  # Optuna's search space
    ("experiment/npz_search.yaml", "{a},{b}"),  # the basic sweeper's list
], ids=["optuna-choice", "basic-list"])
def test_a_search_over_the_data_location_checks_each_listed_value(tmp_path, monkeypatch, file, space):
    """A search over data.path in hydra.sweeper.params was refused as "data.path is not set": the
    searched values are not in the composed config. Each listed value is checked instead, unless
    the command line sets data.path too: every job then gets that value (the basic sweeper applies
    it after the params, Optuna drops the searched entry), and it alone is checked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.npz").write_bytes(b"")
    (tmp_path / "b.npz").write_bytes(b"")
    group, name = file.split("/")[0], "npz_search"
    base = "  - digits_optuna\n" if group == "hparams_search" else ""
    for stem, b in (("npz_search", "b.npz"), ("npz_missing", "missing.npz")):
        _config_file(tmp_path / "my", f"{group}/{stem}.yaml",
                     f"# @package _global_\ndefaults:\n{base}  - override /data: npz\n"
                     f"hydra:\n  sweeper:\n    params:\n      data.path: {space.format(a='a.npz', b=b)}\n")
    command = [*(["-m"] if group == "experiment" else []), "--config-dir", "my"]
    assert check_overrides([*command, f"{group}={name}"]) is None  # a sweep: checked, nothing returned
    with pytest.raises(LitlabError, match=r"data.path=missing.npz does not exist or is not a file"):
        check_overrides([*command, f"{group}=npz_missing"])
    # the command line's value wins over the search: the missing listed file is not any job's
    assert check_overrides([*command, f"{group}=npz_missing", "data.path=a.npz"]) is None
    with pytest.raises(LitlabError, match=r"data.path=gone.npz does not exist or is not a file"):
        check_overrides([*command, f"{group}=npz_search", "data.path=gone.npz"])


@pytest.mark.parametrize("flags", [["--cfg", "job", "--package", "data"], ["-c", "job"]])
def test_showing_the_config_needs_no_data_location(tmp_path, flags):
    """litlab's own errors say to run ``python -m litlab.train data=npz --cfg job --package data``
    to see a node's keys; that command was refused with "data.path is not set"."""
    done = run_cli("litlab.train", "data=npz", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "path: null" in done.stdout and "NpzDataModule" in done.stdout
    assert not (tmp_path / "outputs").exists()  # printed, not run
    for info in (["--info"], ["-i", "config"]):  # Hydra's --info runs nothing either
        check_overrides(["data=npz", *info])
    with pytest.raises(LitlabError, match="data.path is not set"):  # the run itself still needs it
        check_overrides(["data=npz"])


def test_a_sites_launcher_built_on_submitit_slurm_leaves_node_paths_to_the_node(tmp_path, monkeypatch):
    """conf/hydra/launcher/cluster.yaml with ``defaults: [submitit_slurm]`` is SLURM too: its jobs
    read data.path on the nodes, which the login node need not see. Told from the launcher's
    ``_target_``, not the choice's name."""
    monkeypatch.chdir(tmp_path)
    _config_file(tmp_path / "my", "hydra/launcher/cluster.yaml", "defaults:\n  - submitit_slurm\npartition: gpu\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\nexit 0\n")  # a login node has SLURM's sbatch
    (tmp_path / "bin" / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    node_only = ["data=npz", "data.path=/node/scratch/a.npz"]
    check_overrides(["-m", "--config-dir", "my", "hydra/launcher=cluster", *node_only])
    # its devices are checked against SLURM's tasks as submitit_slurm's are
    with pytest.raises(LitlabError, match="hydra.launcher.tasks_per_node=1 but trainer.devices=2"):
        check_overrides(["-m", "--config-dir", "my", "hydra/launcher=cluster", *node_only, "trainer.devices=2",
                         "hydra.launcher.tasks_per_node=1"])
    with pytest.raises(LitlabError, match="data.path=/node/scratch/a.npz does not exist"):  # run here: checked
        check_overrides(["-m", "hydra/launcher=submitit_local", *node_only])


def test_eval_suggests_plus_only_for_an_argument_the_stored_data_module_takes():
    """``data.root=/x`` on an npz run said "add the key with +data.root=...", and following it
    failed later with NpzDataModule's TypeError."""
    with pytest.raises(LitlabError) as e:
        stored_config(NPZ_RUN, ["++data.root=/x"], "r/best.ckpt")
    assert "+data.root=" not in str(e.value)
    assert "litlab.data.npz.NpzDataModule, which has no argument root; it takes data.path, data.batch_size" in str(
        e.value)
    with pytest.raises(LitlabError, match=r"no argument pth; it takes data.path, .* Did you mean data.path\?"):
        stored_config(NPZ_RUN, ["+data.pth=/x"], "r/best.ckpt")
    with pytest.raises(LitlabError, match="add the key with \\+data.val_fraction=..."):  # one it takes: + is right
        stored_config(NPZ_RUN, ["++data.val_fraction=0.2"], "r/best.ckpt")
    assert stored_config(NPZ_RUN, ["+data.val_fraction=0.2"], "r/best.ckpt").data.val_fraction == 0.2


def test_predict_says_when_top_k_is_more_than_the_classes_and_records_the_k_used(tmp_path, monkeypatch, caplog):
    from litlab.data.preprocess import Preprocess
    from litlab.prediction import run as prediction_run
    from litlab.prediction.checkpoint_model import Predictor

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    classes = [f"c{k}" for k in range(10)]
    predictor = Predictor(net, Preprocess("image", [0.0], [1.0], pixels=True), (1, 8, 8), classes, torch.device("cpu"))
    monkeypatch.setattr(prediction_run, "load_predictor", lambda path, device: predictor)
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "model.ckpt").write_bytes(b"not read: the predictor is given")
    cfg = make_cfg([f"ckpt_path={tmp_path / 'model.ckpt'}", f"input={tmp_path / 'a.png'}", "top_k=20"],
                   tmp_path / "pred", tmp_path, "predict", fast=False)
    with caplog.at_level(logging.INFO):
        summary = prediction_run.predict(cfg)
    assert "top_k=20 is more than the 10 classes: each row lists all 10" in caplog.text
    assert summary["top_k"] == 10
    assert json.loads((tmp_path / "pred" / "metrics.json").read_text())["top_k"] == 10


def test_eval_refuses_a_key_the_stored_module_does_not_take_in_one_wording(tmp_path):
    """Before torch (eval.check_data_keys_taken) and after the checkpoint is loaded
    (evaluation.stored_config) the same mistake was told in two wordings; now in one, for
    data.KEY=, +data.KEY= and ++data.KEY= alike."""
    from litlab.eval import check_data_keys_taken

    ckpt = tmp_path / "best.ckpt"
    torch.save({"litlab": {"config": NPZ_RUN["litlab"]["config"]}}, ckpt)
    cfg = OmegaConf.create({"ckpt_path": str(ckpt), "data": {"root": "/x"}})
    with pytest.raises(LitlabError) as early:
        check_data_keys_taken(cfg)
    told = {str(early.value)}
    for given in ("data.root=/x", "+data.root=/x", "++data.root=/x"):
        with pytest.raises(LitlabError) as late:
            stored_config(NPZ_RUN, [given], str(ckpt))
        told.add(str(late.value))
    assert len(told) == 1, told
    assert "NpzDataModule, which has no argument root; it takes data.path" in told.pop()


@pytest.mark.parametrize("names, numbered", [(["0", "1", "2"], True), ([0, 1, 2], True), (["1", "0"], False),
                                             (["cat", "dog"], False)])
def test_the_class_listing_and_the_class_weights_tell_numbered_classes_alike(names, numbered):
    """build.class_listing and class_weights.numbered_classes each had the rule "named by their
    index"; labels read as numbers (0, 1, 2) were numbered for one and listed by the other. Names
    that are their indices are not listed; any others are, in output-index order."""
    from litlab.build import class_listing
    from litlab.class_weights import numbered_classes

    listing = class_listing(names)
    assert numbered_classes(names) is numbered
    if numbered:
        assert listing is None
    else:
        assert listing is not None and all(str(n) in listing for n in names)
        assert listing.index(str(names[0])) < listing.index(str(names[1]))


def test_an_image_folder_of_numbered_folders_is_listed_in_its_text_order(tmp_path):
    """Folders 0..10 are sorted as text (0, 1, 10, 2, ...): index 2 is folder 10, not the
    indices themselves, so the listing must name them."""
    from litlab.build import class_listing
    from litlab.data.image_files import class_folders

    for k in range(11):
        (tmp_path / str(k)).mkdir()
    names = class_folders(tmp_path)
    assert names[:3] == ["0", "1", "10"]
    assert class_listing(names).startswith("0, 1, 10, 2, ")  # index 2 is named 10


def test_predicts_default_top_k_beyond_a_two_class_model_is_no_warning(tmp_path, monkeypatch, caplog):
    """predict.yaml's top_k=3 on a 2-class model warned "top_k=3 is more than the 2 classes" on
    every run, though the user never set top_k: an info line; the CSV still lists both classes."""
    from litlab.data.preprocess import Preprocess
    from litlab.prediction import run as prediction_run
    from litlab.prediction.checkpoint_model import Predictor

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    predictor = Predictor(net, Preprocess("image", [0.0], [1.0], pixels=True), (1, 8, 8), ["cat", "dog"],
                          torch.device("cpu"))
    monkeypatch.setattr(prediction_run, "load_predictor", lambda path, device: predictor)
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "model.ckpt").write_bytes(b"not read: the predictor is given")
    cfg = make_cfg([f"ckpt_path={tmp_path / 'model.ckpt'}", f"input={tmp_path / 'a.png'}"],
                   tmp_path / "pred", tmp_path, "predict", fast=False)
    assert cfg.top_k > 2  # the default is more than this model's classes
    with caplog.at_level(logging.INFO):
        summary = prediction_run.predict(cfg)
    told = [r for r in caplog.records if f"top_k={cfg.top_k} is more than the 2 classes" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.INFO]
    assert summary["top_k"] == 2


def test_an_interruption_outside_lightnings_loops_records_and_prints_the_resume_command(tmp_path, capsys):
    """SIGTERM during compression's fine-tuning recorded interrupted but no resume, though the run
    resumes with its own command and ckpt_path=last."""
    from litlab.run_commands import resume_command
    from litlab.entry import _exit_interrupted

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- model=mlp\n- compress=distill\n")
    update_metrics(run, status="running", task="train")  # written by this process, as training's record is
    cfg = OmegaConf.create({"task_name": "train", "paths": {"output_dir": str(run)}})
    with pytest.raises(SystemExit) as e:
        _exit_interrupted(cfg, signal.SIGTERM)
    assert e.value.code == 128 + signal.SIGTERM
    record = json.loads((run / "metrics.json").read_text())
    expected = resume_command(run)
    assert record["status"] == "interrupted" and record["resume"] == expected
    assert "model=mlp" in expected and "ckpt_path=last" in expected
    assert f"Resume with: {expected}" in capsys.readouterr().err


def test_an_interruption_keeps_a_resume_already_recorded_and_eval_gets_none(tmp_path, capsys):
    from litlab.entry import _exit_interrupted

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    update_metrics(run, status="running", task="train", resume="python -m litlab.train ckpt_path=/other.ckpt")
    with pytest.raises(SystemExit):
        _exit_interrupted(OmegaConf.create({"task_name": "train", "paths": {"output_dir": str(run)}}), signal.SIGINT)
    assert json.loads((run / "metrics.json").read_text())["resume"] == "python -m litlab.train ckpt_path=/other.ckpt"
    assert "Resume with: python -m litlab.train ckpt_path=/other.ckpt" in capsys.readouterr().err
    evaluation = tmp_path / "eval"
    (evaluation / "checkpoints").mkdir(parents=True)
    (evaluation / "checkpoints" / "last.ckpt").write_bytes(b"")
    update_metrics(evaluation, status="running", task="eval")
    with pytest.raises(SystemExit):
        _exit_interrupted(OmegaConf.create({"task_name": "eval", "paths": {"output_dir": str(evaluation)}}),
                          signal.SIGTERM)
    assert "resume" not in json.loads((evaluation / "metrics.json").read_text())
    assert "Resume with" not in capsys.readouterr().err


def test_a_slurm_sweep_leaves_whether_the_data_exists_to_its_jobs(monkeypatch):
    """SLURM runs the jobs on other machines, whose disks this one may not see; a data.root not set
    is refused all the same."""
    import litlab.config_check as config_check

    monkeypatch.setattr(config_check.shutil, "which", lambda name: "/usr/bin/sbatch")
    slurm = ["-m", "hydra/launcher=submitit_slurm", "data=imagefolder", "seed=1,2"]
    assert check_overrides([*slurm, "data.root=/on/the/compute/nodes"]) is None
    with pytest.raises(LitlabError, match="data.root is not set"):
        check_overrides(slurm)


def test_showing_the_config_of_a_slurm_search_needs_no_sbatch(tmp_path, monkeypatch):
    """``--cfg job`` / ``--info`` print the config and submit nothing, yet a search with
    hydra/launcher=submitit_slurm was refused on a machine without SLURM's sbatch, where a user
    looks at the config before going to the cluster."""
    import litlab.config_check as config_check

    search = ["hparams_search=digits_optuna", "hydra/launcher=submitit_slurm", "data=npz"]  # a sweep without -m
    (tmp_path / "no_slurm").mkdir()  # a PATH without sbatch
    done = run_cli("litlab.train", *search, "--cfg", "job", "--package", "data", cwd=tmp_path,
                   env={"PATH": str(tmp_path / "no_slurm")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NpzDataModule" in done.stdout and not (tmp_path / "multirun").exists()
    monkeypatch.setattr(config_check.shutil, "which", lambda name: None)
    for flags in (["-c", "job"], ["--info"], ["-i", "config"]):
        assert check_overrides([*search, *flags]) is None
    with pytest.raises(LitlabError, match="submits every job with SLURM's sbatch, which this machine does not have"):
        check_overrides([*search, "data.path=a.npz"])  # the search itself still needs sbatch


def test_a_single_run_with_the_slurm_launcher_runs_here_and_is_checked_here(tmp_path, monkeypatch):
    """Hydra's launcher starts a sweep's jobs only: a single run (no -m) with
    hydra/launcher=submitit_slurm runs on this machine, yet its data.root and ${oc.env:...} were
    left unchecked as if a SLURM node would read them; the run then failed after torch."""
    monkeypatch.delenv("LITLAB_TEST_UNSET_VARIABLE", raising=False)
    single = ["hydra/launcher=submitit_slurm", "data=imagefolder"]
    with pytest.raises(LitlabError, match=r"data.root=/no/such/folder is not a folder"):
        check_overrides([*single, "data.root=/no/such/folder"])
    with pytest.raises(LitlabError, match=r"Environment variable 'LITLAB_TEST_UNSET_VARIABLE' not found"):
        check_overrides([*single, "data.root=${oc.env:LITLAB_TEST_UNSET_VARIABLE}/images"])
    write_image_folder(tmp_path / "images", per_class=1)  # a usable train/ (its listing is checked)
    assert check_overrides([*single, f"data.root={tmp_path / 'images'}"]) is not None


def test_sigterm_after_training_records_the_command_that_resumes_the_run(cfg_factory, tmp_path, monkeypatch, capsys):
    """The whole path: SIGTERM during the work after training (compression, export), where the
    Interruption callback is no longer there; the run has its last.ckpt."""
    import os
    import time

    import litlab.training as train_module
    from litlab.run_commands import resume_command
    from litlab.entry import run_entrypoint

    def compression(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the work after training")

    monkeypatch.setattr(train_module, "after_training", compression)
    cfg = cfg_factory(["model=mlp", "trainer.max_epochs=1", "logger=none"])
    with pytest.raises(SystemExit) as e:
        run_entrypoint(train_module.train, cfg)
    assert e.value.code == 128 + signal.SIGTERM
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "interrupted" and (run / "checkpoints" / "last.ckpt").is_file()
    assert m["resume"] == resume_command(run) and "ckpt_path=last" in m["resume"]
    assert f"Resume with: {m['resume']}" in capsys.readouterr().err


def test_eval_refuses_a_data_key_the_stored_module_does_not_take_before_torch(tmp_path):
    """``data.root=DIR`` (and ``+data.root=DIR``, as the hint said) on an npz run was refused only
    after torch had loaded the checkpoint, and the + form then failed with NpzDataModule's TypeError.
    The stored config is now read from the file without torch."""
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(3, 2)}, "litlab": {"config": NPZ_RUN["litlab"]["config"]}},
               ckpt)
    (tmp_path / "images").mkdir()
    for given in ("data.root", "+data.root"):
        err = refused_before_torch("litlab.eval", [f"ckpt_path={ckpt}", f"{given}={tmp_path / 'images'}",
                                                   f"hydra.run.dir={tmp_path / 'ev'}"], cwd=tmp_path)
        assert "data.root is not a key of the run stored in" in err and "add the key with +data.root" not in err
        assert "litlab.data.npz.NpzDataModule, which has no argument root; it takes data.path" in err
        assert not (tmp_path / "ev").exists()
    from litlab.checkpoint_record import stored_run_config

    assert stored_run_config(ckpt) == NPZ_RUN["litlab"]["config"]  # the tensors' bytes are not read
