"""What a ``_target_`` inside litlab takes, read from its source file with ``ast``, not imported.

The command-line checks run before torch is imported, and importing most of litlab's modules
imports it; so a target such as ``litlab.callbacks.weight_averaging.ema`` is found in its
module's file under this package and its parameters are read from the definition. Every answer
is certain or None: a target outside litlab, a name bound by an assignment, an import of a
module outside litlab or under a condition, a decorator that may change the signature (other
than a plain ``@dataclass``), a ``**kwargs`` parameter (except one only handed to the ``__init__``
of a litlab base class, ``super().__init__(**kwargs)``: then the base's arguments count too), a
class whose ``__init__`` comes from a base outside litlab or is defined under ``if``/``try`` in
its body all give None, and the caller then accepts whatever was given. Positional-only
parameters (before ``/``) are not among the answer: a key cannot give them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# a definition found: its ast node and the dotted module it is in
Found = tuple[ast.FunctionDef | ast.ClassDef, tuple[str, ...]]


def target_params(target: str) -> tuple[str, ...] | None:
    """The keyword arguments ``target`` (a dotted path into litlab) takes, in their order; None
    where that cannot be read with certainty (the module's docstring says when)."""
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
    found = _definition(target)
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
    """The ``def`` or ``class`` that ``target`` names, following ``from ... import`` within litlab."""
    parts = tuple(str(target).split("."))
    return _find(parts, frozenset()) if parts[0] == "litlab" and len(parts) > 1 else None


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
    """The dotted module a ``from ... import`` in ``module`` reads, where it is inside litlab."""
    if stmt.level:
        package = module if _is_package(module) else module[:-1]
        base = package[:len(package) - stmt.level + 1] if stmt.level > 1 else package
        full = (*base, *(stmt.module.split(".") if stmt.module else ()))
    else:
        full = tuple((stmt.module or "").split("."))
    return full if full and full[0] == "litlab" else None


def _is_package(module: tuple[str, ...]) -> bool:
    return (PACKAGE_DIR.joinpath(*module[1:]) / "__init__.py").is_file()


@functools.lru_cache(maxsize=256)
def _module_tree(module: tuple[str, ...]) -> ast.Module | None:
    """The parsed source of litlab's ``module`` (``("litlab", "callbacks", "ema")``); None where
    no file of the package holds it or it cannot be read."""
    if not module or module[0] != "litlab":
        return None
    inner = PACKAGE_DIR.joinpath(*module[1:])
    path = inner / "__init__.py" if _is_package(module) else inner.with_suffix(".py")
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
    the ``__init__`` of its one base class inside litlab."""
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
    if init is not None and not init.decorator_list and _passes_kwargs_up(init) and len(cls.bases) == 1:
        own = _keyword_names(init.args, method=True)
        inherited = _base_params(cls, module, seen | {here})
        return None if inherited is None else tuple(dict.fromkeys([*own, *inherited]))
    if init is not None:
        return None if init.decorator_list else _function_params(init.args, method=True)
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
    """The keyword arguments of the ``__init__`` of ``cls``'s one base, where it is inside litlab."""
    dotted = _dotted_base(cls.bases[0], module)
    found = _definition(dotted) if dotted else None
    if found is None or not isinstance(found[0], ast.ClassDef):
        return None  # a base outside litlab (nn.Module, Lightning's): its __init__ is not read here
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
