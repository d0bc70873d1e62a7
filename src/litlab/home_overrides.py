"""An override whose value starts with ``~`` as typed (``data.root=~/imgs``): refused at once.

The shell leaves ``~`` after ``data.root=`` as it is (it expands it only at the start of a word
or in an assignment to a shell variable), and Hydra's parser takes ``~`` only as the start of a
key to remove (``~key``, ``~key=value``), so the override failed with Hydra's
"LexerNoViableAltException: data.root=~/imgs ^" and litlab's advice to quote it; quoted, it was
refused again, as litlab does not expand ``~`` (``config_values.check_no_home_paths``). Here the
unquoted one gets that second paragraph at once, for every key that check reads as a path; any
other key gets the same facts without a path to write.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.config_values import check_no_home_paths
from litlab.errors import LitlabError


def check_home_overrides(overrides: list[str], config_name: str) -> None:
    """Refuses the first override ``KEY=~...`` (``+KEY``, ``++KEY`` too; in a sweep ``KEY=a,~/b`` or
    ``KEY=choice(a,~/b)``, named by its first such value) of ``overrides``, before Hydra parses
    them; a quoted value (``KEY='a,~b'``) is taken as written. ``~KEY`` and ``~KEY=VALUE`` remove
    a key and are left to Hydra."""
    for override in overrides:
        key, _, listed = override.partition("=")
        value = next((v for v in _unquoted_values(listed) if v.startswith("~")), None)
        if key.startswith("~") or value is None:
            continue
        key = key.lstrip("+")
        probe = OmegaConf.create()
        try:
            OmegaConf.update(probe, key, value, force_add=True)
        except (OmegaConfBaseException, ValueError, KeyError):
            pass  # a key OmegaConf cannot hold (hydra/launcher's /): not a path litlab reads
        else:
            check_no_home_paths(probe, config_name)  # its paragraph, for a key it reads as a path
        raise LitlabError(
            f"{key}={value} starts with ~, which Hydra reads only at the start of an override, as ~KEY (remove KEY); "
            f"a value that starts with ~ is quoted whole, \"{key}='{value}'\", and litlab takes it as written: it "
            f"does not expand ~ to your home folder (write the full path for a path).")


def _unquoted_values(listed: str) -> list[str]:
    """The values of ``listed`` (what follows ``KEY=``) that Hydra's parser would meet unquoted:
    each of a plain sweep ``a,b`` or of a sweep function's ``choice(a,b)``; the whole where it is
    neither. None of a value with quotes, brackets or braces in it (``'/tmp/a,~b'``, ``[~a]``):
    a quoted ``~`` is the value's own, and a list's is Hydra's to parse."""
    call = re.fullmatch(r"\s*\w+\((.*)\)\s*", listed)
    inner = call.group(1) if call else listed
    if re.search(r"[\'\"\[\]{}()]", inner):
        return []
    return [v.strip() for v in inner.split(",")]
