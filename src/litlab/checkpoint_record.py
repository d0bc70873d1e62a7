"""A checkpoint's run config (``ckpt["litlab"]["config"]``) read without torch.

``litlab.eval`` checks its command line before torch and Lightning are imported (seconds), but
whether ``+data.root=...`` fits the run depends on the data module the checkpoint stored. A
checkpoint written by ``torch.save`` is a zip archive whose ``<name>/data.pkl`` pickles the saved
dict, the tensors' bytes being other members of the archive; here that pickle is read with an
unpickler that builds nothing but plain values: every class or function it names becomes an inert
placeholder (``_Inert``) and every tensor's storage None, so no code of the file runs. Only plain
dicts, lists, strings and numbers come through as they are, which is all a run config holds. A file
this cannot read (another format, a compressed model, whose record is packed into a tensor) gives
None, and the check waits for the checkpoint to be loaded.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

from litlab.checkpoint_paths import saved_pickle


class _Inert:
    """What any class or function named in the pickle becomes: takes any arguments, does nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _PlainValues(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):  # Lightning's state dicts: a plain mapping
            return collections.OrderedDict
        return _Inert

    def persistent_load(self, pid):
        return None  # a tensor's storage: the bytes stay in the archive


def stored_run_config(path: str | Path) -> dict | None:
    """The run config a litlab training checkpoint at ``path`` stores, as plain dicts; None where it
    cannot be read this way."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = saved_pickle(archive)
            if pickled is None:
                return None
            with archive.open(pickled) as file:
                ckpt = _PlainValues(file).load()
    except Exception:  # not a zip, a truncated or odd pickle: load_checkpoint says what is wrong
        return None
    record = ckpt.get("litlab") if isinstance(ckpt, dict) else None
    config = record.get("config") if isinstance(record, dict) else None
    return config if isinstance(config, dict) else None
