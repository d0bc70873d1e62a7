"""litlab.source_signatures: a litlab target's arguments read from its source with ast, certain or None.

Checked on litlab's own targets against ``inspect.signature`` of the imported object, and on a
small package written here with each case the reader must not guess at."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from litlab import source_signatures
from litlab.source_signatures import subclass_of, target_params

CONF = Path(source_signatures.__file__).parent / "conf"


def _litlab_targets() -> list[str]:
    """Every ``_target_`` inside litlab that a file of litlab's conf/ names."""
    found: set[str] = set()

    def walk(node):
        if isinstance(node, DictConfig):
            target = node.get("_target_") if "_target_" in node and not OmegaConf.is_interpolation(node, "_target_") \
                else None
            if isinstance(target, str) and target.startswith("litlab."):
                found.add(target)
            for key in node:
                if not OmegaConf.is_interpolation(node, key):
                    walk(node.get(key))

    for path in CONF.rglob("*.yaml"):
        walk(OmegaConf.load(path))
    return sorted(found)


@pytest.mark.parametrize("target", _litlab_targets())
def test_the_arguments_read_from_source_are_those_of_the_imported_target(target):
    """Where the reader answers, the answer is what the object takes by keyword (inherited ones
    through ``super().__init__(**kwargs)`` included); None only where ``**kwargs`` reaches further."""
    module, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module), name)
    params = inspect.signature(obj).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    read = target_params(target)
    if read is None:
        assert takes_any or inspect.isclass(obj)
        return
    by_keyword = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    assert by_keyword <= set(read)
    if not takes_any:
        assert set(read) == by_keyword
    else:  # **kwargs passed up: the names read are its own and those of the __init__s they reach
        assert inspect.isclass(obj)
        assert set(read) == _keywords_up_the_mro(obj)


def _keywords_up_the_mro(cls: type) -> set[str]:
    """What ``cls(...)`` takes by keyword, told by ``inspect`` alone: each ``__init__`` of its MRO
    from its own, going on to the next class's while the last one read takes ``**kwargs``."""
    names: set[str] = set()
    for owner in (c for c in cls.__mro__ if "__init__" in vars(c)):
        params = list(inspect.signature(owner.__init__).parameters.values())[1:]  # self left out
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def test_averaging_and_compression_targets_read_with_their_bases():
    assert target_params("litlab.callbacks.weight_averaging.ema") == ("decay", "warmup", "update_every_n_steps")
    assert target_params("litlab.compression.pruning.MagnitudePrune") == (
        "amount", "schedule", "ramp", "finetune", "measure")
    assert "batch_size" in target_params("litlab.data.digits.DigitsDataModule")
    assert target_params("torch.nn.Linear") is None  # outside litlab, Lightning and torch.optim: not read
    assert target_params("litlab.no_such_module.Thing") is None


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package read as litlab's: ``write(relative_path, source)``."""
    monkeypatch.setattr(source_signatures, "PACKAGE_DIR", tmp_path)
    source_signatures._module_tree.cache_clear()
    yield lambda rel, text: (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True) or (tmp_path / rel).write_text(
        textwrap.dedent(text))
    source_signatures._module_tree.cache_clear()


def test_only_what_the_source_says_for_certain_is_read(fake_package):
    fake_package("base.py", """
        class Base:
            def __init__(self, finetune=None, measure=None):
                pass
        """)
    fake_package("pkg/__init__.py", "from .impl import Reexported\n")
    fake_package("pkg/impl.py", """
        from litlab.base import Base
        import functools
        import os
        from dataclasses import dataclass

        class Reexported(Base):
            def __init__(self, amount=0.5, **kwargs):
                super().__init__(**kwargs)

        class KwargsKept(Base):
            def __init__(self, amount=0.5, **kwargs):
                super().__init__(**kwargs)
                self.extra = kwargs

        class Inherits(Base):
            pass

        class Outside(os.PathLike):
            pass

        class Plain:
            pass

        @dataclass
        class Fields:
            epochs: int = 5
            lr: float = 1e-3

        @functools.lru_cache
        def decorated(a, b):
            pass

        def positional(a, /, b, *, c):
            pass

        def anything(a, **options):
            pass

        if os.name == "nt":
            def conditional(a):
                pass
        else:
            def conditional(b):
                pass

        alias = positional
        """)
    read = {name: target_params(f"litlab.pkg.impl.{name}") for name in (
        "Reexported", "KwargsKept", "Inherits", "Outside", "Plain", "Fields", "decorated", "positional", "anything",
        "conditional", "alias")}
    assert read == {"Reexported": ("amount", "finetune", "measure"), "KwargsKept": None,
                    "Inherits": ("finetune", "measure"), "Outside": None, "Plain": (), "Fields": ("epochs", "lr"),
                    "decorated": None, "positional": ("b", "c"), "anything": None, "conditional": None, "alias": None}
    assert target_params("litlab.pkg.Reexported") == ("amount", "finetune", "measure")  # through __init__.py
    assert subclass_of("litlab.pkg.impl.Inherits", "litlab.base.Base") is True
    assert subclass_of("litlab.pkg.impl.Plain", "litlab.base.Base") is False
    assert subclass_of("litlab.pkg.impl.Outside", "litlab.base.Base") is False  # os.PathLike: no litlab base
    assert subclass_of("litlab.pkg.impl.Outside", "some.other.Base") is None  # an outside class's bases are not read
    assert subclass_of("litlab.pkg.impl.positional", "litlab.base.Base") is None  # a function may return one


def test_positional_only_parameters_and_an_init_under_a_condition(fake_package):
    """``x`` before ``/`` cannot be given by keyword, and ``amount`` after it can; an ``__init__``
    defined under ``if``/``try`` in the class body is not read (the class then takes what it likes)."""
    fake_package("base.py", """
        class Base:
            def __init__(self, finetune=None, /, measure=None):
                pass
        """)
    fake_package("impl.py", """
        import sys
        from litlab.base import Base

        class PassesUp(Base):
            def __init__(self, x=0, /, amount=0.5, **kwargs):
                super().__init__(**kwargs)

        class OwnOnly:
            def __init__(self, x=0, /, amount=0.5, *, ramp=None):
                pass

        class Conditional:
            if sys.version_info >= (3, 11):
                def __init__(self, amount=0.5):
                    pass
            else:
                def __init__(self, rate=0.5):
                    pass

        class Tried:
            try:
                from litlab.base import Base as __init__
            except ImportError:
                pass
        """)
    read = {name: target_params(f"litlab.impl.{name}") for name in ("PassesUp", "OwnOnly", "Conditional", "Tried")}
    assert read == {"PassesUp": ("amount", "measure"), "OwnOnly": ("amount", "ramp"), "Conditional": None,
                    "Tried": None}


def test_a_dataclass_field_under_a_condition_is_not_guessed_at(fake_package):
    fake_package("impl.py", """
        import sys
        from dataclasses import dataclass

        @dataclass
        class Fields:
            epochs: int = 5
            if sys.platform == "linux":
                lr: float = 1e-3
        """)
    assert target_params("litlab.impl.Fields") is None


def test_an_annotated_local_in_a_dataclass_method_is_no_field(fake_package):
    """The guard against fields under ``if``/``try`` walked into methods: an annotated local in
    ``__post_init__`` made the whole dataclass unread (None), so its keys went unchecked."""
    fake_package("impl.py", """
        from dataclasses import dataclass

        @dataclass
        class Fields:
            epochs: int = 5
            lr: float = 1e-3

            def __post_init__(self):
                limit: float = 10.0
                if self.lr > limit:
                    raise ValueError(self.lr)

            async def later(self):
                step: int = 0

            class Inner:
                note: str = ""
        """)
    assert target_params("litlab.impl.Fields") == ("epochs", "lr")


# Lightning's callbacks and Trainer, torch.optim's optimizers and schedules, and litlab's two
# callbacks whose __init__ is Lightning's: none takes **kwargs, so each must be read exactly
OUTSIDE_TARGETS = [
    "lightning.pytorch.callbacks.EarlyStopping", "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.ModelCheckpoint", "lightning.pytorch.Trainer", "torch.optim.AdamW",
    "torch.optim.SGD", "torch.optim.lr_scheduler.CosineAnnealingLR", "litlab.callbacks.early_stopping.EarlyStopping",
    "litlab.callbacks.lr_monitor.LearningRateMonitor",
]


@pytest.mark.parametrize("target", OUTSIDE_TARGETS)
def test_lightning_and_torch_optim_targets_are_read_as_inspect_sees_them(target):
    """They answered None (a target outside litlab, or a base outside it), so a misspelt key there
    failed only when the run built them; now read from the installed files, in the signature's order
    (the Trainer's through Lightning's ``_defaults_from_env_vars``, which keeps its keywords)."""
    module, _, name = target.rpartition(".")
    params = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters.values())
    assert not any(p.kind is p.VAR_KEYWORD for p in params)
    assert target_params(target) == tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                 p.KEYWORD_ONLY))


def test_outside_targets_are_read_without_importing_their_packages():
    """The check runs before torch is imported: finding Lightning's and torch's files must not import them."""
    probe = ("import sys\nfrom litlab.source_signatures import target_params\n"
             "print(all(target_params(t) is not None for t in sys.argv[1:]), "
             "[m for m in ('torch', 'lightning') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe, *OUTSIDE_TARGETS], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip() == "True []", done.stderr[-2000:]


@pytest.fixture
def outside_package(tmp_path, monkeypatch):
    """A package ``outpkg`` on sys.path, read as one of ``READ_OUTSIDE``: ``write(relative_path, source)``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(source_signatures, "READ_OUTSIDE", (("outpkg",),), raising=False)
    caches = [f for f in vars(source_signatures).values() if hasattr(f, "cache_clear")]
    for cached in caches:
        cached.cache_clear()
    yield lambda rel, text: (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True) or (tmp_path / rel).write_text(
        textwrap.dedent(text))
    for cached in caches:
        cached.cache_clear()


def test_an_outside_package_is_read_through_reexports_and_bases_or_not_at_all(outside_package):
    outside_package("outpkg/__init__.py", "from .sub.mod import Thing, Passes\n")
    outside_package("outpkg/base.py", """
        class Base:
            def __init__(self, rate=0.1, *, steps=1):
                pass
        """)
    outside_package("outpkg/sub/__init__.py", "")
    outside_package("outpkg/sub/mod.py", """
        import functools
        from elsewhere import Foreign
        from outpkg.base import Base

        class Thing(Base):
            pass

        class Passes(Base):
            def __init__(self, width=2, **kwargs):
                super().__init__(**kwargs)

        class FromElsewhere(Foreign):
            pass

        class Decorated:
            @functools.wraps(print)
            def __init__(self, a=1):
                pass
        """)
    outside_package("outpkg/loose/mod.py", "class Thing:\n    def __init__(self, a=1):\n        pass\n")
    assert target_params("outpkg.Thing") == ("rate", "steps")  # re-exported by __init__.py, the base's __init__
    assert target_params("outpkg.Passes") == ("width", "rate", "steps")  # **kwargs handed up to the base
    assert target_params("outpkg.sub.mod.FromElsewhere") is None  # a base in a package not read
    assert target_params("outpkg.sub.mod.Decorated") is None  # a decorator that may change the signature
    assert target_params("outpkg.loose.mod.Thing") is None  # a folder without __init__.py on the way
    assert target_params("otherpkg.Thing") is None
    assert "outpkg" not in sys.modules
