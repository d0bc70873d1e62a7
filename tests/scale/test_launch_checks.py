"""Runs started by torchrun or SLURM: every rank gets one run folder, or none starts.

In-process: the launcher's environment variables are set by hand, and the process group's
all-gather is replaced by the folders other ranks would send.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.plugins.environments import LightningEnvironment, TorchElasticEnvironment

from litlab.distributed import launcher
from litlab.errors import LitlabError
from tests.conftest import CONF_DIR

LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS",
               "SLURM_PROCID", "NODE_RANK")


def _torchrun_rank(monkeypatch, rank: int, world: int = 2) -> None:
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in {"TORCHELASTIC_RUN_ID": "none", "RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world,
                       "LOCAL_WORLD_SIZE": world}.items():
        monkeypatch.setenv(var, str(value))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_torchrun_rank_without_run_dir_is_refused_before_hydra_makes_a_folder(rank, tmp_path, monkeypatch,
                                                                                 capsys):
    """Both ranks made a timestamped folder under outputs/runs/ before the refusal (rank 1's was
    not even checked before Hydra: the command-line checks ran on rank 0 only)."""
    import litlab.train

    _torchrun_rank(monkeypatch, rank)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["litlab.train", "trainer=ddp_cpu", "trainer.max_epochs=1",
                                      f"paths.log_dir={tmp_path / 'outputs'}"])
    with pytest.raises(SystemExit) as exit_:
        litlab.train.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "Error: hydra.run.dir: this process is one rank of a multi-process run started by torchrun or SLURM, and "
        "every rank must write into the same run directory. Pass the same literal hydra.run.dir=outputs/runs/<name> "
        "to every rank, or set a folder without ${now:...} as hydra.run.dir in your own config (see docs/scaling.md).")
    assert list(tmp_path.iterdir()) == []


def _own_primary(folder, run_dir: str, extra: str = "") -> list[str]:
    """``--config-dir/--config-name`` of a primary config of the user's that sets ``hydra.run.dir``."""
    folder.mkdir()
    (folder / "mytrain.yaml").write_text(f"defaults:\n  - train\n  - _self_\n{extra}hydra:\n  run:\n    dir: {run_dir}\n")
    return ["--config-dir", str(folder), "--config-name", "mytrain", "trainer=ddp_cpu"]


def test_a_torchrun_rank_whose_own_config_fixes_the_run_dir_passes(tmp_path, monkeypatch):
    """Every rank was refused ("pass hydra.run.dir=") although the user's primary config set one
    fixed folder for all of them."""
    from litlab.entry import check_cli

    _torchrun_rank(monkeypatch, 1)
    check_cli(_own_primary(tmp_path / "my_conf", "outputs/runs/${name}", extra="name: fixed\n"))


@pytest.mark.parametrize("run_dir, extra", [("outputs/${stamp}", "stamp: ${now:%H-%M-%S}\n"),
                                            ("outputs/runs/${now:%H-%M}", "")])
def test_a_torchrun_rank_whose_own_run_dir_is_timestamped_is_refused(run_dir, extra, tmp_path, monkeypatch, capsys):
    from litlab.entry import check_cli

    _torchrun_rank(monkeypatch, 1)
    with pytest.raises(SystemExit) as exit_:
        check_cli(_own_primary(tmp_path / "my_conf", run_dir, extra))
    assert exit_.value.code == 2
    assert "every rank must write into the same run directory" in capsys.readouterr().err


def test_a_torchrun_rank_with_run_dir_passes_the_command_line_checks(monkeypatch):
    from litlab.entry import check_cli

    _torchrun_rank(monkeypatch, 1)
    check_cli(["trainer=ddp_cpu", "hydra.run.dir=outputs/runs/x"])


@pytest.fixture
def hydra_run(monkeypatch):
    """``hydra_run(run_dir)``: this process as a Hydra job with that ``hydra.run.dir``."""

    def start(run_dir: str) -> None:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra.run.dir={run_dir}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # put back afterwards
    return start


def _trainer_with(environment, setups: list) -> SimpleNamespace:
    strategy = SimpleNamespace(cluster_environment=environment, _launcher=None,
                               setup_environment=lambda: setups.append("setup"))
    return SimpleNamespace(strategy=strategy)


def _other_ranks_send(monkeypatch, *their_dirs: str) -> list:
    gathers = []

    def all_gather_object(out, own):
        gathers.append(own)
        out[:] = [own, *their_dirs]

    monkeypatch.setattr(launcher.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(launcher.dist, "get_world_size", lambda: 1 + len(their_dirs))
    monkeypatch.setattr(launcher.dist, "all_gather_object", all_gather_object)
    return gathers


def test_ranks_given_different_run_dirs_all_stop_naming_the_folders(hydra_run, monkeypatch):
    """Two torchrun nodes with hydra.run.dir=outputs/runs/diff_$r trained to the end, rank 1
    leaving a second folder with only .hydra/ and an empty train.log."""
    hydra_run("outputs/runs/diff_0")
    _other_ranks_send(monkeypatch, "outputs/runs/diff_1", "outputs/runs/diff_0")
    setups = []
    trainer = _trainer_with(TorchElasticEnvironment(), setups)
    launcher.use_run_dir_launcher(trainer)
    with pytest.raises(LitlabError) as error:
        trainer.strategy.setup_environment()
    assert setups == ["setup"]  # compared once the process group exists
    assert str(error.value).startswith(
        "hydra.run.dir differs between the ranks of this run (ranks 0, 2 got outputs/runs/diff_0; rank 1 got "
        "outputs/runs/diff_1), but every rank must write into one run folder, so every rank was stopped before "
        "training.")
    assert "Pass one literal folder to every rank, e.g. hydra.run.dir=outputs/runs/<name>" in str(error.value)
    assert "\n" not in str(error.value)


def test_ranks_given_one_run_dir_go_on_and_lightnings_own_ranks_are_not_compared(hydra_run, monkeypatch):
    hydra_run("outputs/runs/same")
    gathers = _other_ranks_send(monkeypatch, "outputs/runs/same")
    setups = []
    trainer = _trainer_with(TorchElasticEnvironment(), setups)
    launcher.use_run_dir_launcher(trainer)
    trainer.strategy.setup_environment()
    assert setups == ["setup"] and gathers == ["outputs/runs/same"]
    # Lightning's child ranks get rank 0's folder, written another way: no comparison, on any rank
    own = _trainer_with(LightningEnvironment(), setups)
    launcher.use_run_dir_launcher(own)
    own.strategy.setup_environment()
    assert gathers == ["outputs/runs/same"]
