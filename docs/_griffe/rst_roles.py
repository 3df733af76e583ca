"""Griffe extension: render the reST roles in tinkex docstrings as mkdocstrings links.

tinkex docstrings cross-reference with Sphinx roles (``:class:`~tinkex.errors.ConfigError```,
``:meth:`from_env```), which read well in source and in ``help()``; mkdocstrings renders
docstrings as Markdown, where they would show up as raw role syntax. This extension rewrites
each role into an *optional* autorefs link: the name is resolved in the docstring owner's
scope (the way Python resolves it there), linked when the target is rendered somewhere in
the site, and shown as plain code otherwise (standard library names, private helpers), so
a role can never break ``mkdocs build --strict``. Literal-block markers (``text::``) become
a plain colon: the indented block after them is already a Markdown code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|type):`(?P<body>[^`]+)`"
)
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


class ReSTRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package once the whole package is known."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _rewrite_tree(pkg, set())


def _rewrite_tree(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if obj.docstring is not None:
        obj.docstring.value = _rewrite(obj.docstring.value, obj)
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            _rewrite_tree(member, seen)


def _rewrite(text: str, scope: griffe.Object) -> str:
    def link(match: re.Match[str]) -> str:
        body = match["body"].strip()
        titled = _TITLED.match(body)
        if titled:
            title, target = titled["title"], titled["target"].strip()
        else:
            target = body
            title = ""
        short = target.startswith("~")
        target = target.lstrip("~").removesuffix("()")
        if not title:
            title = target.rsplit(".", 1)[-1] if short else target
        identifier = _resolve(target, scope)
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return _LITERAL_MARKER.sub(":", _ROLE.sub(link, text))


def _resolve(target: str, scope: griffe.Object) -> str:
    """The full path of ``target`` as seen from ``scope`` (``target`` itself if unknown)."""
    if target.startswith("."):
        level = len(target) - len(target.lstrip("."))
        module = scope.module
        is_package = module.is_package or module.is_init_module
        package = module.path if is_package else module.path.rpartition(".")[0]
        for _ in range(level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{target.lstrip('.')}"
    head, _, rest = target.partition(".")
    try:
        resolved = scope.resolve(head)
    except griffe.NameResolutionError:
        return target
    return f"{resolved}.{rest}" if rest else resolved
