"""Shared fixtures: compose the real configs for a tiny run in a temporary folder."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

import litlab
from litlab.callbacks import figures

CONF_DIR = Path(litlab.__file__).resolve().parent / "conf"
REPO = Path(__file__).resolve().parents[1]

# small, quick settings every test run starts from (tests add their own overrides after these)
FAST = ["trainer.accelerator=cpu", "trainer.max_epochs=2", "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0", "logger=csv"]

torch.set_num_threads(1)


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name`` that ``make(folder)`` fills once per test session, for a module fixture
    whose tests only read it (a benchmark, a finished run).

    Under ``pytest -n N`` (``make test``) a module's tests are spread over the workers, and each
    worker that draws one made its own copy of the module's fixture; here the first worker to need
    it makes it in the folder the workers share, while the others wait, then all read that one. A
    ``make`` that raised leaves the folder without its ``.made`` mark: the next test to ask fails
    at once instead of making it again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-of-<user>/pytest-<n>/: this session's, above every worker's own
    folder = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (folder / ".made").exists():
            if folder.exists():
                pytest.fail(f"{folder} was not made: the test that first needed it failed making it (its error "
                            f"says why)", pytrace=False)
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder per test session, so the digits PNG tree is written once."""
    return tmp_path_factory.mktemp("data")


def make_cfg(overrides: list[str], run_dir: Path, data_dir: Path, config_name: str = "train",
             fast: bool = True) -> DictConfig:
    """The composed config of ``python -m litlab.<config_name> *overrides``, writing to ``run_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=(FAST if fast else []) + [f"paths.data_dir={data_dir}"] + overrides,
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(run_dir.parent)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path, data_dir):
    """``cfg_factory(overrides, name="run")`` -> config of a run in ``tmp_path/name``."""

    def factory(overrides: list[str] = (), name: str = "run", config_name: str = "train", fast: bool = True):
        return make_cfg(list(overrides), tmp_path / name, data_dir, config_name, fast)

    return factory


def refused_before_torch(module: str, args: list[str], cwd: Path, timeout: int = 300) -> str:
    """Runs ``python -m module args`` (as its ``__main__``), asserts that it exits 2 before torch
    is imported, and returns its stderr."""
    probe = ("import runpy, sys\n"
             f"sys.argv = [{module!r}, *{args!r}]\n"
             "try:\n"
             f"    runpy.run_module({module!r}, run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    print('exit', e.code, 'torch imported:', 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert "exit 2 torch imported: False" in done.stdout, done.stderr[-2000:]
    return done.stderr


def run_cli(module: str, *args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Runs ``python -m <module> args`` as a user would, returning the finished process."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def drawn_texts(monkeypatch) -> list[str]:
    """Every text the figures draw, in order."""
    texts: list[str] = []
    draw = figures._put_text

    def spy(img, xy, text, *args, **kwargs):
        texts.append(text)
        draw(img, xy, text, *args, **kwargs)

    monkeypatch.setattr(figures, "_put_text", spy)
    return texts
