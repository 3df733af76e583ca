"""The documentation site stays true to the code.

* Every page in the ``mkdocs.yml`` nav exists, and every page under ``docs/`` is in the nav.
* Every telemetry signal the code emits is documented in ``docs/telemetry_events.md``, and
  every signal documented there is emitted. The emitted names are found by reading the
  source: each ``telemetry.execute(name, ...)`` and ``telemetry.span(prefix, ...)`` call,
  with ``name`` resolved through string constants, local assignments and the call sites of
  the helper that forwards it. A call whose name cannot be resolved fails the test, so a new
  way of emitting cannot slip past it.
* Every Python snippet in the docs parses, and every name it imports from tinkex exists.

``mkdocs build --strict`` (run by ``.ci/run``) checks the rest: links, anchors, and the API
reference pages rendered from docstrings.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "tinkex"
EVENTS_PAGE = DOCS / "telemetry_events.md"

SPAN_SUFFIXES = (".start", ".stop", ".exception")
SPAN_MACHINERY = {("telemetry.py", "span")}
"""Functions whose ``execute`` calls *are* the span mechanism: their names are the span
prefixes given at the ``span(...)`` call sites, which the test expands instead."""


# --- the nav -------------------------------------------------------------------------------


def _nav_pages(items: list[object]) -> Iterator[str]:
    for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                if isinstance(value, list):
                    yield from _nav_pages(value)
                else:
                    yield str(value)


def _nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return list(_nav_pages(config["nav"]))


def _doc_pages() -> set[str]:
    return {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if not any(part.startswith("_") for part in path.relative_to(DOCS).parts)
    }


def test_every_nav_entry_is_an_existing_page() -> None:
    nav = _nav()
    assert nav, "mkdocs.yml has no nav"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"pages in the mkdocs.yml nav that do not exist under docs/: {missing}"
    duplicates = sorted({page for page in nav if nav.count(page) > 1})
    assert not duplicates, f"pages listed twice in the nav: {duplicates}"


def test_every_page_is_in_the_nav() -> None:
    orphans = sorted(_doc_pages() - set(_nav()))
    assert not orphans, f"pages under docs/ missing from the mkdocs.yml nav: {orphans}"


# --- emitted signals -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Module:
    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]
    telemetry_names: frozenset[str]
    """Bare names bound to ``tinkex.telemetry.execute`` / ``span`` in this module."""

    @property
    def where(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def enclosing_function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef):
                return current
            current = self.parents.get(current)
        return None


def _load_modules() -> list[_Module]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        bare = set()
        if path == PACKAGE / "telemetry.py":
            bare = {"execute", "span"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("telemetry"):
                bare |= {a.asname or a.name for a in node.names if a.name in ("execute", "span")}
        modules.append(_Module(path, tree, parents, frozenset(bare)))
    return modules


def _string_constants(modules: list[_Module]) -> dict[str, set[str]]:
    """Module-level ``NAME = "..."`` (or ``NAME: Final = "..."``) across the package."""
    constants: dict[str, set[str]] = {}
    for module in modules:
        for node in module.tree.body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                for target in targets:
                    if isinstance(target, ast.Name):
                        constants.setdefault(target.id, set()).add(value.value)
    return constants


def _emitter(call: ast.Call, module: _Module) -> str | None:
    """``"execute"`` or ``"span"`` if ``call`` emits through tinkex.telemetry, else None."""
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "telemetry"
        and func.attr in ("execute", "span")
    ):
        return func.attr
    if isinstance(func, ast.Name) and func.id in module.telemetry_names:
        return func.id
    return None


class _Unresolved(Exception):
    pass


@dataclass
class _Resolver:
    modules: list[_Module]
    constants: dict[str, set[str]]

    def names(self, expr: ast.expr, module: _Module, depth: int = 0) -> set[str]:
        """Every string ``expr`` can evaluate to where it stands in ``module``."""
        if depth > 4:
            raise _Unresolved("the name is forwarded through too many helpers")
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.Attribute) and expr.attr in self.constants:
            return set(self.constants[expr.attr])
        if isinstance(expr, ast.Name):
            function = module.enclosing_function(expr)
            if function is not None:
                local = self._local(expr.id, function, module, depth)
                if local is not None:
                    return local
            if expr.id in self.constants:
                return set(self.constants[expr.id])
        raise _Unresolved(f"cannot tell which name {ast.unparse(expr)!r} holds")

    def _local(
        self,
        name: str,
        function: ast.FunctionDef | ast.AsyncFunctionDef,
        module: _Module,
        depth: int,
    ) -> set[str] | None:
        assigned = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ]
        if assigned:
            return set().union(*(self.names(value, module, depth + 1) for value in assigned))
        params = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
        if name in params or name in [a.arg for a in function.args.kwonlyargs]:
            return self._from_callers(function, module, name, params, depth)
        return None

    def _from_callers(
        self,
        function: ast.FunctionDef | ast.AsyncFunctionDef,
        home: _Module,
        name: str,
        params: list[str],
        depth: int,
    ) -> set[str]:
        """The values passed for parameter ``name`` at every call of ``function``.

        A method's calls are ``self.method(...)`` in its own module; a function's are
        ``function(...)`` or ``module.function(...)`` anywhere.
        """
        is_method = bool(params) and params[0] in ("self", "cls")
        position = params.index(name) - is_method if name in params else None
        found: set[str] = set()
        calls = 0
        for module in [home] if is_method else self.modules:
            for node in ast.walk(module.tree):
                if not (isinstance(node, ast.Call) and _calls(node, function.name, is_method)):
                    continue
                calls += 1
                keyword = next((k.value for k in node.keywords if k.arg == name), None)
                if keyword is not None:
                    found |= self.names(keyword, module, depth + 1)
                elif position is not None and position < len(node.args):
                    found |= self.names(node.args[position], module, depth + 1)
        if not calls:
            raise _Unresolved(f"parameter {name!r} of {function.name}() is never passed")
        return found


def _calls(call: ast.Call, function_name: str, method: bool) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return not method and func.id == function_name
    if not (isinstance(func, ast.Attribute) and func.attr == function_name):
        return False
    if not isinstance(func.value, ast.Name):
        return False  # super().emit(...), obj.attr.emit(...): some other function
    return (func.value.id in ("self", "cls")) == method


@functools.cache
def _emitted_signals() -> tuple[frozenset[str], tuple[str, ...]]:
    """The signal names the package emits, and the emit sites that could not be resolved."""
    modules = _load_modules()
    resolver = _Resolver(modules, _string_constants(modules))
    emitted: set[str] = set()
    unresolved: list[str] = []
    for module in modules:
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            kind = _emitter(node, module)
            if kind is None:
                continue
            function = module.enclosing_function(node)
            if function is not None and (module.path.name, function.name) in SPAN_MACHINERY:
                continue
            try:
                names = resolver.names(node.args[0], module)
            except _Unresolved as exc:
                unresolved.append(f"{module.where}:{node.lineno}: {exc}")
                continue
            if kind == "span":
                names = {prefix + suffix for prefix in names for suffix in SPAN_SUFFIXES}
            emitted |= names
    return frozenset(emitted), tuple(unresolved)


_DOCUMENTED_ROW = re.compile(r"^\|\s*`((?:tinkex|telemetry)\.[a-z0-9_.]+)`", re.MULTILINE)


def _documented_signals() -> set[str]:
    """Signal names that head a row of a table on the events page."""
    return set(_DOCUMENTED_ROW.findall(EVENTS_PAGE.read_text(encoding="utf-8")))


def test_every_emit_site_is_understood() -> None:
    _, unresolved = _emitted_signals()
    assert not unresolved, (
        "telemetry emit sites whose signal name the docs test cannot resolve; pass a string "
        "constant (or teach tests/test_docs.py the new pattern):\n" + "\n".join(unresolved)
    )


def test_signal_scan_sees_every_way_of_emitting() -> None:
    # One name per path through the resolver: a span prefix constant, a literal, a constant
    # picked in branches, and a helper's parameter filled at its call sites.
    emitted, _ = _emitted_signals()
    for name in (
        "tinkex.http.request.start",
        "tinkex.http.request.exception",
        "tinkex.rate_limit.backoff",
        "tinkex.future.request_failed",
        "tinkex.future.validation_error",
        "tinkex.supervisor.max_restarts_exceeded",
        "telemetry.handler.failure",
    ):
        assert name in emitted


def test_every_emitted_signal_is_documented() -> None:
    emitted, _ = _emitted_signals()
    undocumented = sorted(emitted - _documented_signals())
    assert not undocumented, (
        f"signals emitted by tinkex but missing from a table row in {EVENTS_PAGE.name}: "
        f"{undocumented}"
    )


def test_every_documented_signal_is_emitted() -> None:
    emitted, _ = _emitted_signals()
    stale = sorted(_documented_signals() - emitted)
    assert not stale, f"{EVENTS_PAGE.name} documents signals nothing emits: {stale}"


def test_logged_markers_match_attach_logger_defaults() -> None:
    from tinkex import telemetry

    text = EVENTS_PAGE.read_text(encoding="utf-8")
    marked = set(re.findall(r"^\|\s*`([a-z0-9_.]+)` \(\*\*logged\*\*\)", text, re.MULTILINE))
    documented_defaults = set(telemetry.DEFAULT_LOG_EVENTS) & _documented_signals()
    assert marked == documented_defaults, (
        f"rows marked (**logged**) in {EVENTS_PAGE.name} differ from "
        f"telemetry.DEFAULT_LOG_EVENTS: marked only {sorted(marked - documented_defaults)}, "
        f"unmarked {sorted(documented_defaults - marked)}"
    )


# --- snippets ------------------------------------------------------------------------------

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _snippets() -> Iterator[tuple[str, str]]:
    for page in sorted(_doc_pages()):
        text = (DOCS / page).read_text(encoding="utf-8")
        for number, match in enumerate(_PYTHON_BLOCK.finditer(text), start=1):
            yield f"{page} (python block {number})", match.group(1)


def _parse(where: str, source: str) -> ast.Module:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree: ast.Module = compile(source, where, "exec", flags=flags)
    return tree


def test_python_snippets_parse() -> None:
    snippets = list(_snippets())
    assert snippets, "no python blocks found in docs/"
    failures = []
    for where, source in snippets:
        try:
            _parse(where, source)
        except SyntaxError as exc:
            failures.append(f"{where}, line {exc.lineno}: {exc.msg}")
    assert not failures, "python blocks that do not parse:\n" + "\n".join(failures)


def _module_file(module_name: str) -> Path | None:
    base = ROOT.joinpath(*module_name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _top_level_names(module_file: Path) -> frozenset[str]:
    """Names a module defines or imports at top level (read, not imported: no torch)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return frozenset(names)


def _import_problem(module_name: str, attribute: str | None) -> str | None:
    module_file = _module_file(module_name)
    if module_file is None:
        return f"no module {module_name}"
    if attribute is None or attribute in _top_level_names(module_file):
        return None
    if _module_file(f"{module_name}.{attribute}") is not None:
        return None  # a submodule
    return f"{module_name} has no {attribute!r}"


def test_names_imported_by_snippets_exist() -> None:
    problems = []
    checked = 0
    for where, source in _snippets():
        try:
            tree = _parse(where, source)
        except SyntaxError:
            continue  # reported by test_python_snippets_parse
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None]]
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module_name, attribute in targets:
                if module_name.split(".")[0] != "tinkex":
                    continue
                checked += 1
                problem = _import_problem(module_name, attribute)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
    assert checked, "no tinkex imports found in the python blocks of docs/"
    assert not problems, "snippets import names that do not exist:\n" + "\n".join(problems)


def test_import_check_catches_a_missing_name() -> None:
    assert _import_problem("tinkex", "ServiceClient") is None
    assert _import_problem("tinkex.local", "LocalServer") is None
    assert _import_problem("tinkex", "types") is None
    assert _import_problem("tinkex", "NoSuchClient") == "tinkex has no 'NoSuchClient'"
    assert _import_problem("tinkex.nowhere", None) == "no module tinkex.nowhere"


@pytest.mark.parametrize("page", ["index.md", "training.md", "sampling.md"])
def test_client_methods_named_in_guides_exist(page: str) -> None:
    # The guides call these clients' methods by name; a renamed method must fail here.
    import tinkex

    text = (DOCS / page).read_text(encoding="utf-8")
    clients = {
        "service": tinkex.ServiceClient,
        "training": tinkex.TrainingClient,
        "sampler": tinkex.SamplingClient,
        "base": tinkex.SamplingClient,
        "tuned": tinkex.SamplingClient,
        "current": tinkex.SamplingClient,
    }
    called = re.findall(rf"\b({'|'.join(clients)})\.([a-z_]+)\(", text)
    assert called, f"{page} calls no client methods"
    missing = sorted({f"{var}.{name}" for var, name in called if not hasattr(clients[var], name)})
    assert not missing, f"{page} calls methods the clients do not have: {missing}"


# --- the local server's endpoints ----------------------------------------------------------

_ENDPOINT_ROW = re.compile(r"^\| ([A-Z]+(?: / [A-Z]+)*) \| `([a-z_/{}]+)(?:\?[^`]*)?` \|", re.M)


def _documented_endpoints() -> set[tuple[str, str]]:
    """``(method, /api/v1/path)`` for each row of the endpoint table in local_backend.md."""
    text = (DOCS / "local_backend.md").read_text(encoding="utf-8")
    return {
        (method, f"/api/v1/{path}")
        for methods, path in _ENDPOINT_ROW.findall(text)
        for method in methods.split(" / ")
    }


def test_every_local_server_endpoint_is_documented() -> None:
    pytest.importorskip("starlette")
    from types import SimpleNamespace

    from starlette.routing import Route

    from tinkex.local.app import build_app

    # The route table needs only the key set and the fault injector of a service.
    service = SimpleNamespace(config=SimpleNamespace(api_keys=frozenset()), faults=None)
    served = {
        (method, route.path)
        for route in build_app(service).routes  # type: ignore[arg-type]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = _documented_endpoints()
    assert served - documented == set(), "endpoints missing from the local_backend.md table"
    assert documented - served == set(), "local_backend.md documents endpoints nobody serves"


# --- lists ---------------------------------------------------------------------------------
# Python-Markdown (what mkdocs renders with) starts a list only after a blank line, a heading
# or an admonition opener, and nests a list only at a multiple of 4 spaces. A list glued to a
# paragraph renders as literal "* " text and a 2-space nested list is flattened into its
# parent, and `mkdocs build --strict` reports neither.

_FENCE = re.compile(r"^\s*(?:```|~~~)")
_LIST_ITEM = re.compile(r"^(\s*)(?:[*+-]|\d+[.)])\s+\S")
_BLOCK_OPENER = re.compile(r"^\s*(?:#{1,6}\s|[!?]{3}\+?\s)")


def _list_problems(text: str) -> list[str]:
    """``"line N: ..."`` for each list item in ``text`` that Python-Markdown mis-renders.

    A *block* is a run of non-blank lines (a fenced code block is part of the block it sits
    in). A list item is glued when its block began with something other than a list item.
    """
    problems = []
    in_fence = False
    block_is_list: bool | None = None  # None: at the start of a block
    glued_reported = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            block_is_list = bool(block_is_list)
            continue
        if in_fence:
            continue
        if not line.strip() or _BLOCK_OPENER.match(line):
            block_is_list, glued_reported = None, False
            continue
        item = _LIST_ITEM.match(line)
        if block_is_list is None:
            block_is_list = item is not None
        elif item and not block_is_list and not glued_reported:
            problems.append(f"line {number}: list glued to the text above (add a blank line)")
            glued_reported = True
        if item and len(item[1]) % 4:
            problems.append(f"line {number}: list item indented by {len(item[1])} spaces (use 4)")
    return problems


def test_every_list_renders_as_a_list() -> None:
    problems = [
        f"{page} {problem}"
        for page in sorted(_doc_pages())
        for problem in _list_problems((DOCS / page).read_text(encoding="utf-8"))
    ]
    assert not problems, "lists that Python-Markdown renders as text:\n" + "\n".join(problems)


def _markdown_extensions() -> tuple[list[str], dict[str, object]]:
    """The site's ``markdown_extensions`` from mkdocs.yml, as ``markdown.markdown`` takes them."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    names: list[str] = []
    configs: dict[str, object] = {}
    for entry in config["markdown_extensions"]:
        name = entry if isinstance(entry, str) else next(iter(entry))
        names.append(name)
        if isinstance(entry, dict):
            configs[name] = entry[name]
    return names, configs


def _renders_as_written(source: str) -> bool:
    """Whether every list-item line became an ``<li>``, nested as deep as it is indented."""
    import markdown  # type: ignore[import-untyped]

    names, configs = _markdown_extensions()
    html = markdown.markdown(source, extensions=names, extension_configs=configs)
    fenced = False
    indents = []
    for line in source.splitlines():
        fenced ^= bool(_FENCE.match(line))
        item = None if fenced else _LIST_ITEM.match(line)
        if item:
            indents.append(len(item[1]))
    depth = deepest = 0
    for closing in re.findall(r"<(/?)[uo]l>", html):
        depth += -1 if closing else 1
        deepest = max(deepest, depth)
    return html.count("<li>") == len(indents) and deepest == len(set(indents))


_GOOD_LISTS = (
    "Text:\n\n* a\n* b\n",
    "## Heading\n* a\n* b\n",
    "* a\n  continued\n* b\n",
    "* a\n    * nested\n    * nested\n* b\n",
    "* a\n\n    more about a\n\n* b\n",
    "1. one\n2. two\n",
    "!!! note\n    * a\n",
    "```\n* not a list\n```\n",
    "*Emphasis* at the start of a line.\n**Bold** too.\n",
)
_BROKEN_LISTS = (
    "**Guards.**\n* a\n* b\n",  # docs/futures.md before the fix
    "Text:\n* a\n",
    "Steps:\n1. one\n2. two\n",
    "| a |\n|---|\n| 1 |\n* a\n",
    "```\ncode\n```\n* a\n",
    "* a\n  * nested\n* b\n",  # docs/local_backend.md before the fix
    "* a\n    * b\n\n    more about a\n* c\n",  # docs/rate_limits.md before the fix
)


@pytest.mark.parametrize("source", _GOOD_LISTS + _BROKEN_LISTS)
def test_list_check_agrees_with_python_markdown(source: str) -> None:
    pytest.importorskip("markdown")
    broken = source in _BROKEN_LISTS
    assert _renders_as_written(source) is not broken, "the sample is not what it claims"
    assert bool(_list_problems(source)) is broken, _list_problems(source)
