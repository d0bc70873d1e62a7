"""Hydra's printing flags (``--cfg``, ``--info``) given with a sweep (``print_flags.py``): one paragraph,
exit status 2 and the command that prints the config, instead of Hydra's traceback ("Only one of
--run, --multirun, --cfg, --info and --shell_completion can be specified") or its advice to add
--multirun, which fails in turn."""

from __future__ import annotations

import shlex

import pytest

from litlab.entry import check_cli
from tests.conftest import refused_before_torch, run_cli


def _refusal(argv: list[str], config_name: str = "train", capsys=None) -> str:
    with pytest.raises(SystemExit) as e:
        check_cli(argv, config_name)
    assert e.value.code == 2
    return capsys.readouterr().err.removeprefix("Error: ").strip()


def _advised(message: str) -> list[list[str]]:
    """The two commands a refusal gives: the one printing the job's config, then the sweeper's."""
    tail = message.split(": python -m ", 1)[1].split(" shows the sweeper's settings")[0]
    return [shlex.split(command) for command in f"python -m {tail}".split("; ")]


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg=job"], ["-c", "hydra"], ["--info"]])
def test_multirun_with_a_printing_flag_says_to_drop_m(flags, capsys):
    message = _refusal(["-m", "trainer.max_epochs=2", *flags], capsys=capsys)
    flag = "--info" if flags == ["--info"] else "--cfg"
    assert message.startswith(f"-m (--multirun) with {flag}: Hydra takes one of them, as {flag} prints one job's "
                              f"config and runs no sweep. Drop -m to print the config the sweep's jobs start from: "
                              f"python -m litlab.train trainer.max_epochs=2 {flag}")
    assert message.endswith("python -m litlab.train trainer.max_epochs=2 --cfg hydra --package hydra.sweeper shows "
                            "the sweeper's settings (a search's space is its hydra.sweeper.params).")
    assert "\n" not in message


def test_swept_values_are_given_their_first_value(capsys):
    message = _refusal(["-m", "model=cnn,mlp", "seed=1,2", "--cfg", "job", "--package", "model.net", "--resolve"],
                       capsys=capsys)
    assert "Drop -m and give each swept key one value to print that job's config: python -m litlab.train model=cnn " \
           "seed=1 --cfg job --package model.net --resolve; python -m litlab.train model=cnn seed=1 --cfg hydra " \
           "--package hydra.sweeper shows" in message


def test_the_sweepers_command_is_given_once(capsys):
    """Before: "...: python -m litlab.train model=cnn --cfg hydra --package hydra.sweeper; python -m litlab.train
    model=cnn --cfg hydra --package hydra.sweeper shows...", the same command twice."""
    message = _refusal(["-m", "model=cnn,mlp", "--cfg", "hydra", "--package", "hydra.sweeper"], capsys=capsys)
    command = "python -m litlab.train model=cnn --cfg hydra --package hydra.sweeper"
    assert message.count(command) == 1
    assert message.endswith(f"that job's config: {command}, which shows the sweeper's settings (a search's space is "
                            f"its hydra.sweeper.params, which leaves out model=cnn,mlp: a value swept on the command "
                            f"line is added to the search when it runs).")


def test_a_search_without_m_is_refused_only_with_a_swept_value(capsys):
    """hparams_search sets hydra.mode=MULTIRUN, and Hydra prints its config: a value swept on the
    command line stopped Hydra with "Sweep parameters ... requires --multirun", exit 1."""
    message = _refusal(["hparams_search=digits_optuna", "model.optimizer.lr=interval(0.001,0.1)", "--cfg", "job"],
                       capsys=capsys)
    assert message.startswith("--cfg with model.optimizer.lr=interval(0.001,0.1): --cfg prints one job's config, "
                              "which Hydra composes as a single run, where a key takes one value. Give each swept "
                              "key one value to print that job's config: python -m litlab.train "
                              "hparams_search=digits_optuna model.optimizer.lr=0.001 --cfg job;")
    assert check_cli(["hparams_search=digits_optuna", "--cfg", "job"]) is None  # printed by Hydra, as before


@pytest.mark.parametrize("flags, named", [(["-m", "-r"], "-m (--multirun) and --run"),
                                          (["--cfg", "job", "--info"], "--cfg and --info"),
                                          (["-r", "--cfg", "job"], "--run and --cfg"),
                                          (["-m", "--cfg", "job", "-i"], "-m (--multirun) and --cfg and --info")])
def test_two_of_hydras_commands_say_to_keep_one(flags, named, capsys):
    assert _refusal(["seed=1", *flags], capsys=capsys) == (
        f"{named} are given together, and Hydra takes one of them: -m sweeps, --run runs once, --cfg and --info "
        f"print the config, --shell-completion sets up the shell's completion. Keep one.")


def test_the_real_entrypoint_refuses_before_torch(tmp_path):
    err = refused_before_torch("litlab.train", ["-m", "model=cnn,mlp", "--cfg", "job"], tmp_path)
    assert "Traceback" not in err and "Only one of" not in err
    assert err.startswith("Error: -m (--multirun) with --cfg:")
    err = refused_before_torch("litlab.eval", ["-m", "ckpt_path=x.ckpt", "--cfg", "job"], tmp_path)
    drop = "Drop -m to print the config the sweep's jobs start from: python -m litlab.eval ckpt_path=x.ckpt --cfg job;"
    assert drop in err
    assert not any(tmp_path.iterdir())  # no folder, no sweep


def test_the_advised_commands_print_the_config(tmp_path, capsys):
    message = _refusal(["-m", "hparams_search=digits_optuna", "model=cnn,mlp", "--cfg", "job", "-p", "model.net"],
                       capsys=capsys)
    job, sweeper = _advised(message)
    assert job == ["python", "-m", "litlab.train", "hparams_search=digits_optuna", "model=cnn", "--cfg", "job",
                   "--package", "model.net"]
    printed = run_cli(*job[2:], cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "_target_: litlab.models.cnn.CNN" in printed.stdout
    printed = run_cli(*sweeper[2:], cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "model.optimizer.lr: tag(log, interval(3e-4, 3e-2))" in printed.stdout
