"""``trainer.devices`` read as Lightning reads it, without torch (the command-line checks and a
resume's comparison of process counts run before torch is imported, or without a machine).

Lightning takes a count (``2``, ``"2"``), every device (``-1``, ``"-1"``), ``auto``, or device
ids: a list (``[0, 1]``) or a comma-separated string (``"0,1"``, ``"1,"``), whose number of ids
is the count. Whether the devices exist on this machine is ``trainer_checks.check_devices``'s
question; here only what the value asks for.
"""

from __future__ import annotations

from collections.abc import Sequence

AUTO = "auto"


def read_devices(value: object) -> int | list[int] | None:
    """``value`` as a number (a count, or -1 for every device), a list of device ids, or None for
    ``auto``. Raises ValueError for a value that is none of these (a yes/no, a word, a float,
    null, ``auto`` with spaces around it, an id string without ids or with a blank one, ``"0, "``,
    an empty list): those Lightning refuses."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a yes/no value")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value == AUTO:  # as Lightning compares it: " auto " is no auto (its CPU accelerator refuses it)
            return None
        if "," not in value:
            return int(value)  # int() allows spaces around the digits, as Lightning's own int(s.strip()); a word raises
        # split as Lightning's _parse_gpu_ids splits: only empty parts are skipped ("1," is the id 1), so a
        # part of spaces ("0, ") raises, as it does in Lightning
        ids = [int(part.strip()) for part in value.split(",") if len(part) > 0]
        if not ids:
            raise ValueError(f"{value!r} names no device id")
        return ids
    if isinstance(value, Sequence):  # a list of ids (a ListConfig too)
        if any(isinstance(i, bool) or not isinstance(i, int) for i in value):
            raise ValueError(f"{value!r} holds something other than device ids")
        if len(value) == 0:  # Lightning: "devices=[] is not a valid input"
            raise ValueError(f"{value!r} names no device id")
        return list(value)
    raise ValueError(f"{value!r} is no device count")


def device_count(value: object) -> int | None:
    """How many devices ``value`` asks for: a count as it is (``2``, ``"2"``), the number of ids
    (``[0, 1]``, ``"0,1"``: 2). None where only the machine can tell (``auto``, ``-1``, and null,
    which leaves Lightning's default ``auto``). Raises ValueError for a value Lightning refuses
    (see ``read_devices``; also 0 and negative counts other than -1)."""
    if value is None:
        return None
    setting = read_devices(value)
    if setting is None or setting == -1:
        return None
    if isinstance(setting, list):
        return len(setting)
    if setting < 1:
        raise ValueError(f"{value!r} is no device count (a positive integer, -1 or auto)")
    return setting


def known_device_count(value: object) -> int | None:
    """``device_count``, with None also for a value Lightning refuses: for the checks that compare
    counts (a resume's, SLURM's tasks, the ranks that never joined), where the trainer checks are
    the ones that say what is wrong with such a value."""
    try:
        return device_count(value)
    except ValueError:
        return None
