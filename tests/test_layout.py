"""The package's layout rules, read from the source (no imports run):

- no import cycle between autograder's modules, counting imports inside functions;
- no module of autograder, no test and no benchmark uses a private name (one leading
  underscore) of another autograder module: through ``from ... import _name``, through
  ``module._name`` on a name bound to an autograder module, or through
  ``getattr``/``setattr``/``monkeypatch.setattr`` on such a module with the name as a
  string.

What is allowed for now is listed below, each case by name and with the reason; remove an
entry once its case is fixed (the test fails on an entry that no longer occurs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "autograder"

# Private names used across modules, allowed for now: (user, module, name), where `user`
# is the using module ("tests.test_x", "autograder.x.y") and `module` the owner.
ALLOWED_PRIVATE: dict[tuple[str, str, str], str] = {}

# Import cycles allowed for now, each as the set of modules in it.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


# --- reading the source ------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files(*tops: str) -> dict[str, Path]:
    found = {}
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _files(PACKAGE)
USERS = {**MODULES, **_files("tests", "benchmarks", "examples")}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve_from(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@dataclass(frozen=True)
class Use:
    user: str
    line: int
    module: str  # the autograder module whose name is used
    name: str

    def __str__(self) -> str:
        return f"{USERS[self.user].relative_to(ROOT)}:{self.line}: {self.module}.{self.name}"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Scope:
    """Names bound in one scope: to an autograder module, or to anything else."""

    def __init__(self, parent: _Scope | None, is_class: bool = False):
        self.parent = parent
        self.is_class = is_class
        self.modules: dict[str, str] = {}
        self.others: set[str] = set()

    def lookup(self, name: str) -> str | None:
        scope: _Scope | None = self
        first = True
        while scope is not None:
            if first or not scope.is_class:  # class bodies do not enclose their methods
                if name in scope.modules:
                    return scope.modules[name]
                if name in scope.others:
                    return None
            first = False
            scope = scope.parent
        return None


_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _own_nodes(scope_node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a scope, without those of the scopes nested in it (their decorators,
    defaults and the first iterable of a comprehension belong to this one)."""
    if isinstance(scope_node, ast.Module | ast.ClassDef):
        todo = list(scope_node.body)
    elif isinstance(scope_node, ast.FunctionDef | ast.AsyncFunctionDef):
        todo = list(scope_node.body)
    elif isinstance(scope_node, ast.Lambda):
        todo = [scope_node.body]
    else:  # a comprehension
        todo = [
            *([scope_node.key, scope_node.value] if isinstance(scope_node, ast.DictComp) else []),
            *([scope_node.elt] if not isinstance(scope_node, ast.DictComp) else []),
        ]
        for i, gen in enumerate(scope_node.generators):
            todo += [gen.target, *gen.ifs] + ([gen.iter] if i else [])
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, _SCOPES):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                todo += node.decorator_list
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                todo += [*node.args.defaults, *filter(None, node.args.kw_defaults)]
            if isinstance(node, ast.ClassDef):
                todo += [*node.bases, *(k.value for k in node.keywords)]
            if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
                todo.append(node.generators[0].iter)
            continue
        todo += list(ast.iter_child_nodes(node))


class _Reader:
    """One file: the autograder modules it imports, and the private names it uses."""

    def __init__(self, module: str, path: Path):
        self.module = module
        self.path = path
        self.imports: set[str] = set()
        self.uses: list[Use] = []
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        self._scope(tree, None)

    def _bind_imports(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                if target.split(".")[0] != PACKAGE:
                    scope.others.add(alias.asname or target.split(".")[0])
                    continue
                if target in MODULES:
                    self.imports.add(target)
                if alias.asname:
                    scope.modules[alias.asname] = target
                else:
                    scope.modules[target.split(".")[0]] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, self.module, self.path)
            if source.split(".")[0] != PACKAGE:
                scope.others.update(a.asname or a.name for a in node.names)
                return
            for alias in node.names:
                bound = alias.asname or alias.name
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    self.imports.add(sub)
                    scope.modules[bound] = sub
                    continue
                if source in MODULES:
                    self.imports.add(source)
                scope.others.add(bound)
                if _private(alias.name) and source != self.module:
                    self.uses.append(Use(self.module, node.lineno, source, alias.name))

    def _bind_others(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            scope.others.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope.others.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.others.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            pass

    def _module_of(self, node: ast.AST, scope: _Scope) -> str | None:
        """The autograder module an expression names (a bound name, or attributes of one
        naming submodules), else None."""
        if isinstance(node, ast.Name):
            return scope.lookup(node.id)
        if isinstance(node, ast.Attribute):
            base = self._module_of(node.value, scope)
            if base is not None and f"{base}.{node.attr}" in MODULES:
                return f"{base}.{node.attr}"
        return None

    def _scope(self, scope_node: ast.AST, parent: _Scope | None) -> None:
        scope = _Scope(parent, is_class=isinstance(scope_node, ast.ClassDef))
        if isinstance(scope_node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = scope_node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    scope.others.add(arg.arg)
        nodes = list(_own_nodes(scope_node))
        for node in nodes:
            self._bind_imports(node, scope)
        for node in nodes:
            self._bind_others(node, scope)
        for node in nodes:
            if isinstance(node, _SCOPES):
                self._scope(node, scope)
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = self._module_of(node.value, scope)
                if owner is not None and owner != self.module:
                    self.uses.append(Use(self.module, node.lineno, owner, node.attr))
            elif isinstance(node, ast.Call):
                self._check_by_string(node, scope)

    def _check_by_string(self, call: ast.Call, scope: _Scope) -> None:
        """getattr(module, "_x"), setattr(...), monkeypatch.setattr(module, "_x", ...)."""
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in ("getattr", "setattr", "delattr", "hasattr") or len(call.args) < 2:
            return
        owner = self._module_of(call.args[0], scope)
        key = call.args[1]
        if owner is None or owner == self.module or not isinstance(key, ast.Constant):
            return
        if isinstance(key.value, str) and _private(key.value):
            self.uses.append(Use(self.module, call.lineno, owner, key.value))


READERS = {name: _Reader(name, path) for name, path in USERS.items()}


# --- the rules -----------------------------------------------------------------------------


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _import_graph() -> dict[str, set[str]]:
    return {m: READERS[m].imports - {m} for m in MODULES}


def _describe_cycle(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)
    return "{" + ", ".join(sorted(component)) + "}: " + "; ".join(edges)


def test_the_reader_sees_imports_in_functions_and_relative_ones():
    """The rules below are only as good as the reading: does it find a lazy relative
    import (course imports the coordinator inside `grade`) and an absolute one inside a
    function (the fork server's worker template)?"""
    assert "autograder.batch.coordinator" in READERS["autograder.course"].imports
    assert "autograder.batch.worker" in READERS["autograder.batch.forkserver"].imports
    assert "autograder.core.outcome" in READERS["autograder.batch.store"].imports


def test_the_reader_finds_private_names_however_they_are_reached(tmp_path):
    """A private name reached through a from-import, an alias, a chain of submodules or
    monkeypatch is found; a parameter or local that shadows a module's name is not it."""
    path = tmp_path / "sample.py"
    path.write_text(
        "import autograder.batch.store\n"
        "import autograder.core.outcome as o\n"
        "from autograder.batch import worker\n"
        "from autograder.batch.forkserver import _plain_module\n"
        "o._a\n"
        "autograder.batch.store._b\n"
        "def f(worker, monkeypatch):\n"
        "    worker._not_a_module\n"
        "    monkeypatch.setattr(o, '_c', None)\n"
        "    return [worker._not_either for worker in ()]\n"
        "class K:\n"
        "    worker = 1\n"
        "    def g(self):\n"
        "        return worker._d\n",
        encoding="utf-8",
    )
    reader = _Reader("tests.sample", path)
    found = sorted((u.module, u.name) for u in reader.uses)
    assert found == [
        ("autograder.batch.forkserver", "_plain_module"),
        ("autograder.batch.store", "_b"),
        ("autograder.batch.worker", "_d"),
        ("autograder.core.outcome", "_a"),
        ("autograder.core.outcome", "_c"),
    ]
    assert reader.imports == {
        "autograder.batch.store",
        "autograder.core.outcome",
        "autograder.batch.worker",
        "autograder.batch.forkserver",
    }


def test_no_import_cycle_between_modules():
    graph = _import_graph()
    cycles = _cycles(graph)
    unexpected = [_describe_cycle(c, graph) for c in cycles if c not in ALLOWED_CYCLES]
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in cycles]
    assert not stale, f"allowed cycles that no longer occur (remove them): {stale}"


def test_no_private_name_of_another_module_is_used():
    uses = [use for reader in READERS.values() for use in reader.uses]
    unexpected = [str(u) for u in uses if (u.user, u.module, u.name) not in ALLOWED_PRIVATE]
    assert not unexpected, "private names used from outside their module:\n" + "\n".join(unexpected)
    seen = {(u.user, u.module, u.name) for u in uses}
    stale = sorted(key for key in ALLOWED_PRIVATE if key not in seen)
    assert not stale, f"allowed private uses that no longer occur (remove them): {stale}"


def test_the_engine_and_the_core_stay_below_the_facade():
    """autograder.core imports nothing of the facade, the engine, the judge or the
    command line; the batch engine never imports the facade."""
    graph = _import_graph()
    above_core = ("autograder.course", "autograder.batch", "autograder.judge", "autograder.cli")
    for module, imports in graph.items():
        if module.startswith("autograder.core"):
            bad = sorted(i for i in imports if i.startswith(above_core))
            assert not bad, f"{module} imports {bad}"
        if module.startswith("autograder.batch"):
            assert "autograder.course" not in imports, f"{module} imports autograder.course"
