"""Finding the compression results in metrics.json, whatever their exact names."""

from __future__ import annotations


def _pick(keys: list[str], must: tuple[str, ...], prefer: tuple[str, ...]) -> str | None:
    found = [k for k in keys if all(m in k.lower() for m in must)]
    for word in prefer:
        preferred = [k for k in found if word in k.lower()]
        if preferred:
            found = preferred
    return sorted(found, key=len)[0] if found else None


def compression_keys(metrics_of_jobs: list[dict]) -> dict[str, str]:
    """``{"accuracy": key, "size": key, "latency": key}`` for the ``compress/...`` numbers present.

    Prefers the numbers after compression (``compress/after/...``), test accuracy, sizes in bytes
    and latency at batch size 1; a kind with no key is left out.
    """
    keys = sorted({k for m in metrics_of_jobs for k, v in m.items()
                   if k.startswith("compress/") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    after = [k for k in keys if "after" in k] or keys
    out = {"accuracy": _pick(after, ("acc",), ("test",)),
           "size": _pick(after, ("size",), ("bytes",)),
           "latency": _pick(after, ("latency",), ("b1",))}
    return {kind: key for kind, key in out.items() if key}
