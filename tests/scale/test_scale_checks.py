"""Bad scale settings fail up front with one paragraph naming the key."""

import pytest
from omegaconf import OmegaConf

from litlab.errors import LitlabError
from litlab.sweeps.sweep_plots import pareto_front
from litlab.trainer_checks import check_trainer_config
from tests.conftest import run_cli


def _trainer(**keys):
    return OmegaConf.create({"accelerator": "cpu", "devices": 1, "precision": 32, **keys})


@pytest.mark.parametrize("keys, named", [
    ({"devices": 4096}, "trainer.devices=4096"),
    ({"accelerator": "gpu"}, "trainer.accelerator=gpu"),
    ({"precision": "16-mixed"}, "trainer.precision=16-mixed"),
    ({"precision": "8"}, "trainer.precision"),
    ({"num_nodes": 2}, "trainer.num_nodes=2"),
    ({"strategy": {"_target_": "lightning.pytorch.strategies.FSDPStrategy"}}, "trainer.strategy"),
    ({"strategy": "fsdp"}, "trainer.strategy"),
    ({"strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy", "process_group_backend": "nccl"}},
     "process_group_backend=nccl"),
    # both passed the check and failed after the data was prepared: mpi in torch's traceback, with a
    # rank left to be killed; -1 and id lists in Lightning's CPU accelerator
    ({"strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy", "process_group_backend": "mpi"}},
     "process_group_backend=mpi: this torch build has no such process-group backend; it has gloo"),
    ({"devices": -1}, r"trainer.devices=-1: on the CPU, trainer.devices is the number of processes, from 1 to \d+"),
    ({"devices": [0, 1]}, "trainer.devices=[0, 1]: on the CPU"),
])
def test_what_this_machine_cannot_run_is_refused(keys, named, monkeypatch):
    for var in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(LitlabError, match=named.replace("[", r"\[")):
        check_trainer_config(_trainer(**keys))


def test_node_count_must_match_the_launcher(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(LitlabError, match="launcher started 3"):
        check_trainer_config(_trainer(num_nodes=2, devices=1))


def test_torchrun_process_count_must_match_the_devices_on_one_node(monkeypatch):
    """torchrun --nproc-per-node=2 with trainer.devices=1 got Lightning's ValueError traceback on every
    rank, after the data was prepared: the count was compared only for several nodes."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(LitlabError, match=r"^trainer\.num_nodes=1 x trainer\.devices=1 = 1 process\(es\), but the "
                                          r"launcher started 2\. .* Here that is trainer\.devices=2 "
                                          r"trainer\.num_nodes=1\.$"):
        check_trainer_config(_trainer(devices=1))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    check_trainer_config(_trainer(devices=1))


def test_a_slurm_allocation_on_one_node_is_left_to_lightning(monkeypatch):
    """A plain python in a batch script of several tasks: Lightning starts its own processes there."""
    for var in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    check_trainer_config(_trainer(devices=1))


@pytest.mark.parametrize("precision", ["32", "64", "bf16-mixed"])
def test_cpu_precisions_pass(precision):
    check_trainer_config(_trainer(precision=precision))


def test_sweep_over_a_missing_key_fails_before_any_job(tmp_path):
    proc = run_cli("litlab.train", "-m", "model=mlp", "model.optimizer.lrr=1e-3,3e-3", f"paths.log_dir={tmp_path}")
    assert proc.returncode != 0
    assert "model.optimizer.lrr" in proc.stderr
    assert not (tmp_path / "multiruns").exists() or not any((tmp_path / "multiruns").rglob("metrics.json"))


def test_pareto_front_keeps_only_unbeaten_points():
    # (accuracy, size): (0.9, 10) beats (0.8, 12); (0.95, 20) and (0.7, 5) trade off
    points = [(0.9, 10), (0.8, 12), (0.95, 20), (0.7, 5), (0.9, 10)]
    assert pareto_front(points) == [0, 2, 3, 4]


def test_an_interval_needs_a_search_not_the_basic_sweeper():
    """interval() used to end in Hydra's traceback 'Can only enumerate CHOICE and RANGE sweeps'."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=r"model\.optimizer\.lr=interval\(1e-4,1e-2\): interval\(\) is a range to "
                                          r"search, which Hydra's basic sweeper cannot enumerate"):
        check_overrides(["-m", "model.optimizer.lr=interval(1e-4,1e-2)"])
    # with Optuna it is a search space; both ends are composed and checked
    assert check_overrides(["-m", "hparams_search=digits_optuna", "model.optimizer.lr=interval(1e-4,1e-2)"]) is None
    with pytest.raises(LitlabError, match=r"model\.optimizer\.lrr"):
        check_overrides(["-m", "hparams_search=digits_optuna", "model.optimizer.lrr=interval(1e-4,1e-2)"])


@pytest.mark.parametrize("args,error", [
    (["-m", "model=glob(m*)"], None),
    # glob(*) also ran conf/model/_classifier.yaml as a job, which failed with a traceback
    (["-m", "model=glob(*)"], r"model=glob\(\*\) also matches _classifier, the base\(s\) that the choices of "
                              r"conf/model/ share, not choices themselves\. Leave them out with model=glob\(\*,exclude=_\*\)"),
    (["-m", "model=glob(*,exclude=_*)"], None),
    (["-m", "model=glob(zz*)"], r"model=glob\(zz\*\) matches none of conf/model/'s choices \(cnn, gru"),
    (["-m", "model=choice(mlp,gru)"], None),
    (["-m", "model=choice(mlp,grux)"], r"model=grux is not a choice"),
    # two methods merged into one config: "Quantize got an unexpected keyword argument 'amount'"
    (["compress=[prune,quantize]"], r"compress=\[prune,quantize\] selects several files of conf/compress/ at once"
                                    r".* compare them in a sweep with -m compress=prune,quantize"),
    (["-m", "logger=[csv,tensorboard]", "model=mlp,cnn"], None),
    # a search file makes a sweep without -m: its sweep values and settings are checked as such
    (["hparams_search=digits_optuna", "model.optimizer.lr=choice(1e-3,1e-2)"], None),
    (["hparams_search=digits_optuna", "hydra.sweeper.n_trials=0"], r"hydra\.sweeper\.n_trials must be a positive"),
    (["-m", "hparams_search=digits_optuna", "hydra.sweeper.n_jobs=0"], r"hydra\.sweeper\.n_jobs must be a positive"),
    (["-m", "hparams_search=digits_optuna", "hydra.sweeper.direction=upward"],
     r"hydra\.sweeper\.direction must be minimize or maximize, got upward"),
    # the search sought the highest loss, without a word
    (["hparams_search=digits_optuna", "optimized_metric=val/loss"],
     r"optimized_metric=val/loss is best at its lowest, but hydra\.sweeper\.direction=maximize searches for its "
     r"highest\. Add hydra\.sweeper\.direction=minimize\."),
    (["hparams_search=digits_optuna", "optimized_metric=val/loss", "hydra.sweeper.direction=minimize"], None),
    # ranges Optuna cannot sample ended in its ValueError traceback after the sweep folder was made
    (["-m", "hparams_search=digits_optuna", "model.optimizer.lr=interval(0.1,0.01)"],
     r"model\.optimizer\.lr=interval\(0\.1,0\.01\): the range starts at 0\.1, above its end 0\.01"),
    (["hparams_search=digits_optuna", "model.optimizer.lr=tag(log,interval(0,0.1))"],
     r"model\.optimizer\.lr=tag\(log,interval\(0,0\.1\)\): a range searched on a log scale must start above 0"),
    (["hparams_search=digits_optuna", "model.optimizer.lr=interval(0.001,0.001)"], None),
    # Hydra's own choices: basic was refused because conf/hydra/launcher/ has no basic.yaml
    (["-m", "hydra/launcher=basic", "model=mlp,cnn"], None),
    (["-m", "hydra/launcher=basci", "model=mlp,cnn"],  # no "Config search path: provider=..." after it
     r"Could not find 'hydra/launcher/basci' Available options in 'hydra/launcher': basic submitit_local "
     r"submitit_slurm$"),
])
def test_sweep_values_and_sweeper_settings_are_checked_before_any_job(args, error):
    """glob()/choice() over a group were refused as file names, the rest ended in tracebacks."""
    from litlab.config_check import check_choices, check_overrides

    def check():  # what every entrypoint runs before Hydra starts
        check_choices(args)
        return check_overrides(args)

    if error is None:
        assert check() is None
    else:
        with pytest.raises(LitlabError, match=error):
            check()


@pytest.mark.parametrize("space,error", [
    ("tag(log, interval(3e-4, 3e-2))", None),
    ("interval(0.1, 0.001)", r"hydra\.sweeper\.params\.model\.optimizer\.lr=interval\(0\.1, 0\.001\): the range "
                             r"starts at 0\.1, above its end 0\.001"),
    ("tag(log, interval(-1, 1))", r"log scale must start above 0, this one starts at -1"),
    ("interval(0.1", r"hydra\.sweeper\.params\.model\.optimizer\.lr=interval\(0\.1 is not a search space Hydra can read"),
])
def test_a_search_files_ranges_are_checked(space, error):
    """The ranges of a conf/hparams_search/ file (not on the command line) reached Optuna unchecked."""
    from litlab.config_check import check_overrides, check_sweeper_and_launcher, compose_checked

    assert check_overrides(["hparams_search=digits_optuna"]) is None
    cfg = compose_checked(["hparams_search=digits_optuna"], return_hydra_config=True)
    cfg.hydra.sweeper.params["model.optimizer.lr"] = space
    if error is None:
        check_sweeper_and_launcher(cfg)
    else:
        with pytest.raises(LitlabError, match=error):
            check_sweeper_and_launcher(cfg)


def test_slurm_launcher_without_slurm_is_refused(monkeypatch):
    import litlab.config_check as config_check

    monkeypatch.setattr(config_check.shutil, "which", lambda name: None)
    with pytest.raises(LitlabError, match=r"hydra/launcher=submitit_slurm submits every job with SLURM's sbatch"):
        config_check.check_overrides(["-m", "hydra/launcher=submitit_slurm", "model=mlp,cnn"])


def test_slurm_tasks_must_match_the_devices_before_the_jobs_are_queued(monkeypatch):
    """A mismatch was refused only when each job started, after its wait in the queue."""
    import litlab.config_check as config_check

    monkeypatch.setattr(config_check.shutil, "which", lambda name: "/usr/bin/sbatch")
    base = ["-m", "hydra/launcher=submitit_slurm", "model=mlp,cnn", "trainer=ddp_cpu"]
    with pytest.raises(LitlabError, match=r"^hydra\.launcher\.tasks_per_node=1 but trainer\.devices=2: .* Set "
                                          r"hydra\.launcher\.tasks_per_node=2"):
        config_check.check_overrides([*base, "trainer.devices=2"])
    with pytest.raises(LitlabError, match=r"^hydra\.launcher\.nodes=1 but trainer\.num_nodes=2"):
        config_check.check_overrides([*base, "trainer.devices=2", "hydra.launcher.tasks_per_node=2",
                                      "trainer.num_nodes=2"])
    assert config_check.check_overrides([*base, "trainer.devices=2", "hydra.launcher.tasks_per_node=2"]) is None


def test_a_sweep_folder_is_not_reused(tmp_path):
    """A second sweep into the same hydra.sweep.dir replaced the first one's jobs and mixed both."""
    from litlab.config_check import check_overrides

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    assert check_overrides(["-m", "model=mlp,cnn", f"hydra.sweep.dir={sweep}"]) is None  # empty: fine
    (sweep / "0").mkdir()
    (sweep / "0" / "metrics.json").write_text("{}")
    with pytest.raises(LitlabError, match=r"hydra\.sweep\.dir=.*sweep already holds a sweep \(1 job\(s\) with results\)"):
        check_overrides(["-m", "model=mlp,cnn", f"hydra.sweep.dir={sweep}"])


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_the_ready_search_takes_another_sampler(sampler):
    """digits_optuna set a TPE-only key, which every other sampler refused."""
    from litlab.config_check import compose_checked

    cfg = compose_checked(["hparams_search=digits_optuna", f"hydra/sweeper/sampler={sampler}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.sampler.seed == 1234
    assert cfg.hydra.sweeper.sampler._target_.endswith({"tpe": "TPESampler", "random": "RandomSampler"}[sampler])


@pytest.mark.parametrize("override,error", [
    ("model.optimizer.lr=", r"model\.optimizer\.lr must be a number >= 0, got ''"),
    ("model.optimizer.lr=abc", r"model\.optimizer\.lr must be a number >= 0, got 'abc'"),
    ("model.optimizer.weight_decay=-1", r"model\.optimizer\.weight_decay must be a number >= 0, got -1"),
    ("model.optimizer.lr=0", None),
    ("~model.optimizer.weight_decay", None),
])
def test_optimizer_values_are_checked_with_the_command_line(override, error):
    """An empty lr= failed in torch's optimizer after the data was prepared: "model.optimizer:
    TypeError: '<=' not supported between instances of 'float' and 'str'"."""
    from litlab.config_check import check_overrides

    if error is None:
        assert check_overrides([override]) is not None
    else:
        with pytest.raises(LitlabError, match=error):
            check_overrides([override])


def test_a_loss_monitored_for_its_highest_value_is_refused_with_the_command_line():
    """It was found after the data was prepared; best.ckpt had silently held the worst epoch before that."""
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=r"callbacks\.model_checkpoint\.monitor=val/loss is best at its lowest"):
        check_overrides(["callbacks.model_checkpoint.monitor=val/loss"])
    assert check_overrides(["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"])


@pytest.mark.parametrize("args,match", [
    # the first error advised a +, which then failed with another error; only that one named ++
    (["compress=none,prune", "compress.finetune.epochs=1"], r"^compress\.finetune\.epochs=1: a sweep over compress "
                                                            r"starts from its default choice.*Write it as "
                                                            r"\+\+compress\.finetune\.epochs=1"),
    # Optuna's settings in a grid: "add it with +", then a TypeError from BasicSweeper and exit 1
    (["model.optimizer.lr=1e-3,2e-3", "hydra.sweeper.n_trials=3"], r"^hydra\.sweeper\.n_trials is a setting of the "
                                                                   r"Optuna sweeper, and this sweep runs Hydra's basic"),
    (["model.optimizer.lr=1e-3,2e-3", "+hydra.sweeper.n_trials=3"], r"^hydra\.sweeper\.n_trials is a setting of the "
                                                                    r"Optuna sweeper"),
    # trials "in parallel" that ran one after another, silently
    (["hparams_search=digits_optuna", "hydra.sweeper.n_jobs=2"], r"^hydra\.sweeper\.n_jobs=2 asks for trials side by "
                                                                 r"side, but Hydra's basic launcher runs them one after"),
])
def test_a_sweep_setting_in_the_wrong_place_says_where_it_goes(args, match):
    from litlab.config_check import check_overrides

    with pytest.raises(LitlabError, match=match):
        check_overrides(["-m", *args])
