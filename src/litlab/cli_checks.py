"""Checks of the command line before Hydra composes it: unknown config choices get one paragraph."""

from __future__ import annotations

from pathlib import Path

from litlab.errors import LitlabError

CONF_DIR = Path(__file__).resolve().parent / "conf"


def choices(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The choices of a config group: its YAML files, without the shared bases (``_name``)."""
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def check_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """``group=name`` (or ``group=a,b`` in a sweep) must name files of ``conf/<group>/``."""
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "." in group or not (conf_dir / group).is_dir() or group == "hydra":
            continue
        names = choices(group, conf_dir)
        for value_part in value.split(","):
            name = value_part.strip()
            if name in ("null", "") or name.startswith(("choice(", "range(", "interval(")):
                continue
            if name not in names and not (conf_dir / group / f"{name}.yaml").is_file():
                raise LitlabError(
                    f"{group}={name} is not a choice: conf/{group}/ has {', '.join(names) or 'no files'}. "
                    f"Pick one of them, or add conf/{group}/{name}.yaml."
                )
