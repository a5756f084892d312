"""Resolve the cross references autodoc writes for hface's own types, and link the stdlib.

autodoc names a type by where it is defined, but hface documents every name
where it is public:

- ``hface.common._tls.ServerTLSConfig`` (from ``__module__``) is documented as
  ``hface.common.ServerTLSConfig``: private segments are dropped;
- ``ServerTLSConfig`` alone (an annotation kept as a string) is looked up
  by its last component, and resolved when exactly one documented object has
  it; a method name alone is looked up in the current class and its bases;
- ``:mod:`._quic``` is the sibling of the current module, as in Python;
- a private name (``:meth:`_pull```, ``:data:`_WRITE_GRACE```) is named in
  code style, not linked, and so is a private module that no page
  documents; so is any name in the theory of operation of a private module
  (the "Theory of operation" page) that is not documented.

Every name in the ``__all__`` of a documented module must be documented
(:func:`check_all_documented`).

References into the standard library link to docs.python.org, whose
``library/MODULE.html#NAME`` anchors are stable; the build never downloads
an inventory (CI has no network for it). Everything else still warns.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from docutils import nodes
from docutils.nodes import Element, TextElement
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.domains.python import ObjectEntry, PythonDomain
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.nodes import make_refnode

logger = logging.getLogger(__name__)

#: Standard library modules whose objects are all on ``library/<module>.html``.
STDLIB_MODULES = frozenset(
    {
        "abc",
        "argparse",
        "collections.abc",
        "contextlib",
        "dataclasses",
        "enum",
        "ipaddress",
        "os",
        "pathlib",
        "socket",
        "ssl",
        "types",
        "typing",
    }
)
STDLIB_URL = "https://docs.python.org/3/library/{module}.html#{name}"


def _public_name(target: str) -> str:
    parts = target.split(".")
    kept = [part for part in parts[:-1] if not part.startswith("_")]
    return ".".join([*kept, parts[-1]])


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def _stdlib_module(target: str) -> str | None:
    module = target.rpartition(".")[0]
    while module:
        if module in STDLIB_MODULES:
            return module
        module = module.rpartition(".")[0]
    return None


def _find(env: BuildEnvironment, name: str) -> tuple[str, ObjectEntry] | None:
    """The one hface object documented as ``name`` or ``*.name``, if exactly one is."""
    domain: PythonDomain = env.domains.python_domain
    matches = {
        (entry.docname, entry.node_id): (full, entry)
        for full, entry in domain.find_obj(env, "", "", name, None, searchmode=1)
        if full.startswith("hface.") and not entry.aliased
    }
    return next(iter(matches.values())) if len(matches) == 1 else None


def _find_in_class(
    env: BuildEnvironment, node: pending_xref, name: str
) -> tuple[str, ObjectEntry] | None:
    """``name`` as a member of the current class or of one of its bases."""
    module = sys.modules.get(node.get("py:module") or "")
    cls = getattr(module, node.get("py:class") or "", None)
    for base in getattr(cls, "__mro__", ()):
        if base.__module__.startswith("hface."):
            found = _find(env, f"{base.__name__}.{name}")
            if found is not None:
                return found
    return None


def resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: TextElement
) -> Element | None:
    """Handle ``missing-reference``: the cases described in the module docstring."""
    if node.get("refdomain") != "py":
        return None
    target: str = node["reftarget"].lstrip(".~")
    module = _stdlib_module(target)
    if module is not None:
        reference = nodes.reference("", "", internal=False)
        reference["refuri"] = STDLIB_URL.format(module=module, name=target)
        reference["reftitle"] = f"(in Python) {target}"
        reference.append(contnode)
        return reference
    if node["reftype"] == "mod" and _is_private(target):
        return contnode  # a private module that no page documents: named, not linked
    if target.startswith("hface."):
        name = _public_name(target)
    elif not target.startswith("_"):
        name = target
    else:
        return contnode  # a private name (``_WRITE_GRACE``): no page documents it
    found = _find(env, name)
    if found is None and "." not in name:
        found = _find_in_class(env, node, name)
    if found is None:
        if _is_private(node.get("py:module") or ""):
            return contnode  # a theory of operation naming a private helper
        return None
    full_name, entry = found
    return make_refnode(
        app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, full_name
    )


def resolve_relative_modules(app: Sphinx, doctree: nodes.document) -> None:
    """Read ``:mod:`._quic``` as Python would: a sibling of the current module.

    The Python domain would search every module named ``*._quic`` instead,
    and there are several.
    """
    for node in doctree.findall(pending_xref):
        if node.get("refdomain") != "py" or node["reftype"] != "mod":
            continue
        if not node.get("refspecific") or not node.get("py:module"):
            continue
        package = node["py:module"].rpartition(".")[0]
        candidate = f"{package}.{node['reftarget']}"
        try:
            found = importlib.util.find_spec(candidate) is not None
        except ImportError:
            found = False
        if found:
            node["reftarget"] = candidate
            node["refspecific"] = False


def check_all_documented(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn about a name in the ``__all__`` of a documented module that no page documents.

    A public name added to the code without a place in the docs fails the
    build, as a broken reference does. A re-export counts as documented where
    the same object is documented under the same name (``hface.server`` and
    ``hface.client`` re-export the TLS settings of ``hface.common``).
    """
    objects = env.domains.python_domain.objects
    modules = sorted(
        name
        for name, entry in objects.items()
        if entry.objtype == "module" and not _is_private(name)
    )
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            documented = any(
                f"{other}.{name}" in objects
                and getattr(importlib.import_module(other), name, None) is value
                for other in modules
            )
            if not documented:
                logger.warning(
                    "%s.%s is in __all__ but no page documents it",
                    module_name,
                    name,
                    type="hface",
                    subtype="undocumented",
                )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the resolver and the check."""
    app.connect("env-check-consistency", check_all_documented)
    app.connect("doctree-read", resolve_relative_modules)
    app.connect("missing-reference", resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
