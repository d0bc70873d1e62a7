"""What a ``_target_`` takes, read from its source file with ``ast``, not imported.

The command-line checks run before torch is imported, and importing most of litlab's modules
imports it; so a target such as ``litlab.callbacks.weight_averaging.ema`` is found in its
module's file under this package and its parameters are read from the definition. Targets in
Lightning (``lightning.pytorch.Trainer``, ``lightning.pytorch.callbacks.EarlyStopping``) and in
``torch.optim`` (``torch.optim.AdamW``, ``torch.optim.lr_scheduler.CosineAnnealingLR``) are read the
same way (``READ_OUTSIDE``): the package's folder is found without importing it (``sys.modules``,
or ``importlib.util.find_spec`` of its top-level name, which imports nothing) and the module's
``.py`` file under it is parsed; a litlab class built on one of theirs (litlab's
``EarlyStopping``) is read through that base. Every answer is certain or None: a target in
another package, a name bound by an assignment, an import of a module outside those packages or
under a condition, a decorator that may change the signature (other than a plain
``@dataclass``, and Lightning's ``_defaults_from_env_vars`` on the Trainer's ``__init__``, which
calls it with the same keywords), a ``**kwargs`` parameter (except one only handed to the
``__init__`` of a base class read here, ``super().__init__(**kwargs)``: then the base's arguments
count too), a class whose ``__init__`` comes from a base outside those packages (``nn.Module``)
or is defined under ``if``/``try`` in its body, a module found only as compiled code all give
None, and the caller then accepts whatever was given. Positional-only parameters (before ``/``)
are not among the answer: a key cannot give them. Each module is parsed once per process.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# the modules outside litlab whose source is read too (each with the modules under it): the
# trainer, callbacks, optimizers and schedules that configs name most
READ_OUTSIDE = (("lightning",), ("torch", "optim"))
# decorators of an ``__init__`` that call it with the keywords they were given: Lightning's Trainer
# fills missing arguments from PL_TRAINER_* variables this way
KEEPS_KEYWORDS = frozenset({"lightning.pytorch.utilities.argparse._defaults_from_env_vars"})

# a definition found: its ast node and the dotted module it is in
Found = tuple[ast.FunctionDef | ast.ClassDef, tuple[str, ...]]


def target_params(target: str) -> tuple[str, ...] | None:
    """The keyword arguments ``target`` (a dotted path into litlab or ``READ_OUTSIDE``) takes, in
    their order; None where that cannot be read with certainty (the module's docstring says when)."""
    found = _definition(target)
    if found is None:
        return None
    node, module = found
    if isinstance(node, ast.ClassDef):
        return _class_params(node, module, frozenset())
    return None if node.decorator_list else _function_params(node.args, method=False)


def subclass_of(target: str, base: str) -> bool | None:
    """Whether ``target`` (a dotted path into litlab) builds a ``base``, read from the source:
    True where ``target`` is that class or has it among its bases (``base`` may be outside litlab:
    ``lightning.pytorch.loggers.TensorBoardLogger``, as a litlab module imports it); False where it
    is a class whose every base is read to its end without meeting it (for a ``base`` inside
    litlab, a class outside litlab ends it: it cannot derive from litlab's); None where that cannot
    be told (a builder function, a name not found, a base outside litlab's bases of the class)."""
    found = _definition(target) if str(target).startswith("litlab.") else None
    if found is None or not isinstance(found[0], ast.ClassDef):
        return None
    return _derives(found[0], found[1], base, frozenset())


def _derives(cls: ast.ClassDef, module: tuple[str, ...], base: str, seen: frozenset[str]) -> bool | None:
    here = ".".join((*module, cls.name))
    if here == base:
        return True
    if here in seen:
        return None
    answers = []
    for expr in cls.bases:
        dotted = _dotted_base(expr, module)
        if dotted is None:
            return None
        found = _definition(dotted) if dotted.startswith("litlab.") else None
        if dotted == base:
            return True
        if not dotted.startswith("litlab."):  # a class outside litlab, whose bases are not read here
            answers.append(False if base.startswith("litlab.") else None)  # it cannot derive from litlab's
        elif found is None or not isinstance(found[0], ast.ClassDef):
            return None
        else:
            answers.append(_derives(found[0], found[1], base, seen | {here}))
    return True if True in answers else None if None in answers else False


def _definition(target: str) -> Found | None:
    """The ``def`` or ``class`` that ``target`` names, following ``from ... import`` within the
    packages read (litlab's and ``READ_OUTSIDE``)."""
    parts = tuple(str(target).split("."))
    return _find(parts, frozenset()) if len(parts) > 1 and _readable(parts[:-1]) else None


def _readable(module: tuple[str, ...]) -> bool:
    """Whether ``module`` is litlab's or under one of ``READ_OUTSIDE``."""
    return bool(module) and (module[0] == "litlab" or any(module[:len(p)] == p for p in READ_OUTSIDE))


def _find(parts: tuple[str, ...], seen: frozenset[tuple[str, ...]]) -> Found | None:
    if parts in seen or len(seen) > 20:
        return None
    module, name = parts[:-1], parts[-1]
    tree = _module_tree(module)
    if tree is None:
        return None
    bindings = _bindings(tree.body, name)
    if len(bindings) != 1:  # bound twice, or not at all
        return None
    stmt = bindings[0]  # a binding under if/try is that compound statement: not read
    if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
        return stmt, module
    if isinstance(stmt, ast.ImportFrom):
        alias = next(a for a in stmt.names if (a.asname or a.name) == name)
        source = _imported_module(stmt, module)
        return None if source is None else _find((*source, alias.name), seen | {parts})
    return None  # an assignment or a plain import: not read


def _bindings(body: list[ast.stmt], name: str) -> list[ast.stmt]:
    """The statements of a module's ``body`` that bind ``name``: its own statements, or the
    compound statement (``if``, ``try``) around a binding inside, outside functions and classes."""
    found: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found += [stmt] if stmt.name == name else []
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            found += [stmt] if any((a.asname or a.name.split(".")[0]) == name for a in stmt.names) else []
        elif any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(stmt)):
            found.append(stmt)  # an assignment, a loop variable, or one inside if/try
        else:
            inner = [s for field in ("body", "orelse", "finalbody", "handlers")
                     for s in getattr(stmt, field, None) or [] if isinstance(s, (ast.stmt, ast.excepthandler))]
            found += [stmt] if _bindings([s for s in inner if isinstance(s, ast.stmt)], name) or any(
                _bindings(h.body, name) for h in inner if isinstance(h, ast.excepthandler)) else []
    return found


def _imported_module(stmt: ast.ImportFrom, module: tuple[str, ...]) -> tuple[str, ...] | None:
    """The dotted module a ``from ... import`` in ``module`` reads, where it is one read here
    (``_readable``)."""
    if stmt.level:
        package = module if _is_package(module) else module[:-1]
        base = package[:len(package) - stmt.level + 1] if stmt.level > 1 else package
        full = (*base, *(stmt.module.split(".") if stmt.module else ()))
    else:
        full = tuple((stmt.module or "").split("."))
    return full if _readable(full) else None


def _is_package(module: tuple[str, ...]) -> bool:
    found = _source_file(module)
    return found is not None and found.name == "__init__.py"


def _source_file(module: tuple[str, ...]) -> Path | None:
    """The ``.py`` file of ``module`` (its ``__init__.py`` for a package), under litlab's folder or
    the folder of the package outside it; None where it is not one read here, or no such file is
    there (outside litlab, a folder between without ``__init__.py`` is not followed either)."""
    if not _readable(module):
        return None
    root = PACKAGE_DIR if module[0] == "litlab" else _package_dir(module[0])
    if root is None:
        return None
    inner = root.joinpath(*module[1:])
    if module[0] != "litlab" and not all((root.joinpath(*module[1:i]) / "__init__.py").is_file()
                                         for i in range(1, len(module))):
        return None
    if (inner / "__init__.py").is_file():
        return inner / "__init__.py"
    return inner.with_suffix(".py") if len(module) > 1 and inner.with_suffix(".py").is_file() else None


@functools.lru_cache(maxsize=8)
def _package_dir(name: str) -> Path | None:
    """The one folder the top-level package ``name`` is imported from, found without importing it:
    its ``__path__`` where it is imported already, else ``find_spec`` of the top-level name (which
    has no parent to import); None for a namespace package over several folders or none found."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        folders = list(getattr(loaded, "__path__", None) or [])
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) if len(folders) == 1 else None


@functools.lru_cache(maxsize=256)
def _module_tree(module: tuple[str, ...]) -> ast.Module | None:
    """The parsed source of ``module`` (``("litlab", "callbacks", "ema")``, ``("torch", "optim",
    "adamw")``); None where it is not read here, no file holds it or it cannot be read."""
    path = _source_file(module)
    if path is None:
        return None
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _dotted_base(expr: ast.expr, module: tuple[str, ...]) -> str | None:
    """The dotted path a base class expression names: a name of ``module`` (defined or imported
    there) or ``alias.Name`` of an imported module; None where it is anything else."""
    if isinstance(expr, ast.Name):
        tree = _module_tree(module)
        bound = _bindings(tree.body, expr.id) if tree is not None else []
        if len(bound) != 1:
            return None
        stmt = bound[0]
        if isinstance(stmt, ast.ClassDef):
            return ".".join((*module, expr.id))
        if isinstance(stmt, ast.ImportFrom):
            alias = next(a for a in stmt.names if (a.asname or a.name) == expr.id)
            source = _imported_module(stmt, module)
            if source is not None:
                return ".".join((*source, alias.name))
            return f"{stmt.module}.{alias.name}" if stmt.module and not stmt.level else None
        return None
    if isinstance(expr, ast.Attribute):
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        head = _dotted_base(expr, module) or _imported_name(expr.id, module)
        return None if head is None else ".".join((head, *reversed(parts)))
    return None


def _imported_name(name: str, module: tuple[str, ...]) -> str | None:
    """The module ``import a.b as name`` (or ``import name``) binds to ``name`` in ``module``."""
    tree = _module_tree(module)
    bound = _bindings(tree.body, name) if tree is not None else []
    if len(bound) != 1 or not isinstance(bound[0], ast.Import):
        return None
    alias = next(a for a in bound[0].names if (a.asname or a.name.split(".")[0]) == name)
    return alias.name if alias.asname else name


def _function_params(args: ast.arguments, method: bool) -> tuple[str, ...] | None:
    """The names a call may pass by keyword; None where ``**kwargs`` takes any."""
    return None if args.kwarg is not None else _keyword_names(args, method)


def _keyword_names(args: ast.arguments, method: bool) -> tuple[str, ...]:
    """The parameters of ``args`` a call may name (``**kwargs`` aside): not the positional-only
    ones before ``/``, and not ``self`` of a ``method``, which is the first positional whether
    positional-only or not."""
    positional = [*args.posonlyargs, *args.args][1 if method else 0:]
    by_name = [a for a in positional if a not in args.posonlyargs] + list(args.kwonlyargs)
    return tuple(a.arg for a in by_name)


def _bound_inside(body: list[ast.stmt]) -> set[str]:
    """The names a class ``body`` binds other than by its own top-level ``def``/``class``: an
    assignment, an import, or a ``def``/``class`` under ``if``/``try``/``with``."""
    names: set[str] = set()
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                names |= {a.asname or a.name.split(".")[0] for a in n.names}
    return names


def _class_params(cls: ast.ClassDef, module: tuple[str, ...], seen: frozenset[str]) -> tuple[str, ...] | None:
    """The keyword arguments of ``cls(...)``: its own ``__init__``'s, a plain dataclass's fields, or
    the ``__init__`` of its one base class, where that is read here."""
    here = ".".join((*module, cls.name))
    if here in seen or cls.keywords:  # a metaclass may build the instance otherwise
        return None
    body = {s.name: s for s in cls.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if {"__new__", "__init__", "__call__"} & _bound_inside(cls.body) or "__new__" in body:
        return None  # bound by an assignment or import, or under if/try: not read
    dataclass = _plain_dataclass(cls.decorator_list)
    if cls.decorator_list and not dataclass:
        return None
    init = body.get("__init__")
    plain = init is not None and all(_dotted_base(d, module) in KEEPS_KEYWORDS for d in init.decorator_list)
    if plain and _passes_kwargs_up(init) and len(cls.bases) == 1:
        own = _keyword_names(init.args, method=True)
        inherited = _base_params(cls, module, seen | {here})
        return None if inherited is None else tuple(dict.fromkeys([*own, *inherited]))
    if init is not None:
        return _function_params(init.args, method=True) if plain else None
    if dataclass:
        # a field under if/try: its place among the fields is not read (a method's annotated local,
        # ``limit: float = 10.0`` in ``__post_init__``, is no field)
        if any(isinstance(n, ast.AnnAssign) for s in cls.body
               if not isinstance(s, (ast.AnnAssign, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for n in ast.walk(s)):
            return None
        return None if cls.bases else tuple(
            s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            and not any(w in ast.unparse(s.annotation) for w in ("ClassVar", "KW_ONLY")))
    if not cls.bases:
        return ()  # object's __init__ takes nothing
    return _base_params(cls, module, seen | {here}) if len(cls.bases) == 1 else None


def _base_params(cls: ast.ClassDef, module: tuple[str, ...], seen: frozenset[str]) -> tuple[str, ...] | None:
    """The keyword arguments of the ``__init__`` of ``cls``'s one base, where it is read here
    (litlab's, Lightning's, ``torch.optim``'s)."""
    dotted = _dotted_base(cls.bases[0], module)
    found = _definition(dotted) if dotted else None
    if found is None or not isinstance(found[0], ast.ClassDef):
        return None  # a base in another package (nn.Module): its __init__ is not read here
    return _class_params(found[0], found[1], seen)


def _passes_kwargs_up(init: ast.FunctionDef) -> bool:
    """Whether ``init``'s ``**kwargs`` go to its base's ``__init__`` and nowhere else: read only in
    one ``super().__init__(..., **kwargs)`` (the keys it takes are then the base's)."""
    name = init.args.kwarg.arg if init.args.kwarg else None
    if name is None or init.args.vararg is not None:
        return False
    uses = [n for n in ast.walk(init) if isinstance(n, ast.Name) and n.id == name]
    calls = [c for c in ast.walk(init) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
             and c.func.attr == "__init__" and isinstance(c.func.value, ast.Call)
             and isinstance(c.func.value.func, ast.Name) and c.func.value.func.id == "super" and not c.func.value.args
             and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == name for k in c.keywords)]
    return len(uses) == 1 and len(calls) == 1


def _plain_dataclass(decorators: list[ast.expr]) -> bool:
    """Whether ``decorators`` are exactly ``@dataclass`` (or ``dataclass(frozen=...)``), which
    writes an ``__init__`` of the class's fields; ``init=False`` leaves it out."""
    if len(decorators) != 1:
        return False
    d = decorators[0]
    call = d if isinstance(d, ast.Call) else None
    name = call.func if call else d
    plain = (isinstance(name, ast.Name) and name.id == "dataclass") or (
        isinstance(name, ast.Attribute) and name.attr == "dataclass")
    return plain and not (call and (call.args or any(k.arg == "init" for k in call.keywords)))
