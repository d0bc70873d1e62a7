"""The separate sweeps advised where a key given to every job of a sweep suits only some of its choices.

``sweep_refusals`` refuses such a sweep before any job (``-m averaging=none,ema,swa ++averaging.decay=0.9``:
SWA has settings but no ``decay``), as ``sweep_keys`` does a key the class of some choices does not
take, and ends its paragraph with :func:`separate_sweeps`: the choices that take the key with it,
then the others without it, each sweep in a folder of its own where the command or a config it
chooses names one. Torch-free: ``config_check`` reaches it through those modules before torch is
imported.
"""

from __future__ import annotations

import shlex

from omegaconf import OmegaConf

from litlab.choice_files import composed_with
from litlab.config_flags import Primary


def separate_sweeps(primary: Primary, rest: list[str], group: str, having: list[str], typed: list[str],
                    others: list[str], have: dict[str, set[str]] | None = None, refused: str | None = None) -> str:
    """``Sweep them separately: A, then B.``: the choices of ``group`` that take the refused key
    (``having``), then the ``others``, each in its own folder. With ``have`` (each choice's keys),
    each gets the keys of ``typed`` that no choice of its is known to reject (``_taken``), the
    ``others`` never the ``refused`` override; without, ``having`` gets them all and the others none."""
    first = _taken(primary, rest, group, typed, having, have) if have is not None else typed
    second = [o for o in _taken(primary, rest, group, typed, others, have) if o != refused] if have is not None else []
    one, two = (" ".join([f"{group}={','.join(c)}", *map(shlex.quote, k)]) for c, k in ((having, first),
                                                                                        (others, second)))
    return (f"Sweep them separately: {_split_command(primary, rest, having)} {one}, then "
            f"{_split_command(primary, rest, others)} {two}.")


def _taken(primary: Primary, rest: list[str], group: str, typed: list[str], choices: list[str],
           have: dict[str, set[str]]) -> list[str]:
    """The overrides of ``typed`` that none of ``choices`` is known to reject, where one of them has
    settings (a choice with none carries the key unread, and alone would be refused for it). A
    choice rejects a key it has not, nor its first part, unless its class takes it
    (``sweep_keys.rejecting_choices``): ``+trainer.gradient_clip_algorithm=norm`` no trainer file sets
    stays, as ``lightning.Trainer`` takes it."""
    # sweep_keys imports this module at its top: its helpers are read once both are loaded
    from litlab.sweep_keys import rejecting_choices, setting_path

    kept = []
    for o in typed:
        path = setting_path(o)
        lacking = [c for c in choices if have.get(c) and path not in have[c] and path.split(".")[0] not in have[c]]
        if any(have.get(c) for c in choices) and not (
                lacking and rejecting_choices(group, path, lacking, typed, rest, primary)):
            kept.append(o)
    return kept


def _split_command(primary: Primary, rest: list[str], choices: list[str]) -> str:
    """The command of one of the separate sweeps :func:`separate_sweeps` advises, up to the
    group: ``rest`` (the command's other overrides), each sweep in a folder of its own where the
    command (``hydra.sweep.dir=/x``, ``++hydra.sweep.dir=/x``) or a config it chooses (an
    experiment's fixed folder) names one: ``/x`` becomes ``/x-ema``, then ``/x-none-swa``. In one
    folder the second would be refused, as it already holds the first's jobs."""
    suffix = "-".join(choices)
    named = [o for o in rest if o.lstrip("+").split("=", 1)[0] == "hydra.sweep.dir"]
    words = [f"{o.split('=', 1)[0]}={o.split('=', 1)[1].rstrip('/')}-{suffix}" if o in named else o for o in rest]
    fixed = None if named else _configured_sweep_dir(primary, rest)
    words += [f"hydra.sweep.dir={fixed.rstrip('/')}-{suffix}"] if fixed else []
    return " ".join([primary.command(), "-m", *map(shlex.quote, words)])


def _configured_sweep_dir(primary: Primary, rest: list[str]) -> str | None:
    """``hydra.sweep.dir`` as the configs ``rest`` chooses set it (``experiment=x`` with a folder of
    its own), where it is one fixed folder; None for a new folder each start (``${now:...}``, the
    default) or where it cannot be composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        single = [p.input_line for p in OverridesParser.create().parse_overrides(rest) if not p.is_sweep_override()]
    except HydraException:
        return None
    cfg = composed_with(single, primary)
    if cfg is None:
        return None
    try:
        if "${now:" in str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("dir")):
            return None
        value = OmegaConf.select(cfg, "hydra.sweep.dir")
    except OmegaConfBaseException:
        return None
    return str(value) if value else None

