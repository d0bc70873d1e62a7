"""User-facing errors: one paragraph that names the key or file, no traceback."""

from __future__ import annotations


class LitlabError(Exception):
    """A mistake in the user's input (config, data, checkpoint) with a message meant for them.

    Entrypoints catch it, print the message as one paragraph and exit with status 2.
    """

    exit_code = 2


def config_error(key: str, expected: str, found: object, hint: str = "") -> LitlabError:
    """Builds the error for a config key whose value is not what litlab can use.

    Args:
        key: the dotted key the user types, e.g. ``data.batch_size``.
        expected: what a valid value looks like.
        found: the value that was given.
        hint: what to do about it.
    """
    msg = f"{key} must be {expected}, got {found!r}."
    if hint:
        msg += f" {hint}"
    return LitlabError(msg)


def check_positive_int(key: str, value: object) -> int:
    """Returns ``value`` if it is a positive int, else raises a LitlabError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config_error(key, "a positive integer", value)
    return value


def check_fraction(key: str, value: object, *, allow_zero: bool = True) -> float:
    """Returns ``value`` as a float in [0, 1) (or (0, 1)), else raises a LitlabError naming ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (ok and low_ok and value < 1):
        span = "[0, 1)" if allow_zero else "(0, 1)"
        raise config_error(key, f"a number in {span}", value)
    return float(value)


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises a LitlabError listing them."""
    if value not in choices:
        raise config_error(key, "one of " + ", ".join(choices), value)
    return value  # type: ignore[return-value]
