"""The ``--cfg job`` command that shows the node a refused key is under, as the user composed it.

A bare ``python -m litlab.train --cfg job`` composes the defaults: after ``mixing=mixup
mixing.alpah=0.3`` it printed ``mixing: {}`` (mixing=none), not the node whose keys the user
wanted to see. The command here keeps the command line's other overrides (quoted for the shell) and
adds ``--package <node>`` where the node is known, so that it prints that node alone.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def show_command(command: str, overrides: Sequence[str], leave_out: Sequence[str] = (),
                 package: str | None = None) -> str:
    """``command`` (``python -m litlab.train`` with its config flags) with ``overrides`` less those of
    ``leave_out`` (the refused ones, which would fail again), then ``--cfg job`` and, for a node
    below the top, ``--package <node>``."""
    kept = [shlex.quote(o) for o in overrides if o not in leave_out]
    shown = ["--cfg", "job", *(["--package", package] if package else [])]
    return " ".join([command, *kept, *shown])
