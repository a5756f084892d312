"""autodoc adjustments for hface's layout: public names re-exported from private modules.

- Data re-exported by a package (``hface.protocols.PROTOCOL_KINDS``, type
  aliases such as ``hface.common.AddressType``) has its ``#:`` comment in the
  private module that defines it; autodoc only looks in the package and would
  fall back to the docstring of the value's type (``dict``'s, ``tuple``'s).
  We take the comment from the defining module.
- The docstrings of private modules (shown on the "Theory of operation"
  page, under headings of its own) lose their section titles.
- Private dataclass fields are left out of signatures.
- Private base classes (``_HTTP2Protocol``, ``HTTP1Base``) are not
  documented: a class shows its nearest public ancestors instead, and no
  "Bases: object" line.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import signature as sphinx_signature
from sphinx.util.inspect import stringify_signature


def _attribute_comment(module_name: str, attribute: str) -> list[str] | None:
    try:
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except PycodeError:
        return None
    lines = docs.get(("", attribute))
    return list(lines) if lines else None


def _defining_comment(package: str, attribute: str, obj: object) -> list[str] | None:
    prefix = package + "._"
    for module_name in sorted(name for name in sys.modules if name.startswith(prefix)):
        module = sys.modules[module_name]
        if getattr(module, attribute, None) is obj:
            lines = _attribute_comment(module_name, attribute)
            if lines:
                return lines
    return None


def _drop_headings(lines: list[str]) -> None:
    """Remove section titles: the page that includes a module docstring has its own."""
    index = 0
    while index + 1 < len(lines):
        title, underline = lines[index], lines[index + 1].strip()
        if (
            title.strip()
            and len(set(underline)) == 1
            and underline[0] in "=-~^"
            and (len(underline) >= len(title.strip()))
        ):
            del lines[index : index + 2]
            if index < len(lines) and not lines[index].strip():
                del lines[index]
        else:
            index += 1


def process_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """Give re-exported data the ``#:`` comment of the module that defines it."""
    if what == "module" and "._" in name:
        _drop_headings(lines)
    if not name.startswith("hface.") or what not in ("data", "class"):
        return
    package, _, attribute = name.rpartition(".")
    if what == "class" and getattr(obj, "__module__", "").startswith("hface."):
        return  # an hface class: its own docstring is the right one
    if not _attribute_comment(package, attribute):  # else autodoc found it in the package
        comment = _defining_comment(package, attribute, obj)
        if comment:
            lines[:] = [*comment, ""]
    if what == "data" and isinstance(obj, type):  # an alias of a class, shown with :no-value:
        lines.append(f"alias of :class:`{obj.__module__}.{obj.__qualname__}`")


def process_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Leave private fields (``_body`` of a dataclass) out of class signatures."""
    if what != "class" or not signature or ", _" not in signature:
        return None
    try:
        full = sphinx_signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    public = [p for p in full.parameters.values() if not p.name.startswith("_")]
    if len(public) == len(full.parameters):
        return None
    short = app.config.autodoc_typehints_format == "short"
    text = stringify_signature(
        full.replace(parameters=public), show_return_annotation=False, unqualified_typehints=short
    )
    return text, return_annotation


def _is_public(cls: type) -> bool:
    module = cls.__module__
    if not module.startswith("hface."):
        return True  # not ours: shown as it is
    if cls.__name__.startswith("_"):
        return False
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    try:
        return getattr(importlib.import_module(public), cls.__name__, None) is cls
    except ImportError:
        return False


def _public_bases(cls: type) -> list[type]:
    bases: list[type] = []
    for base in cls.__bases__:
        for public in [base] if _is_public(base) else _public_bases(base):
            if public not in bases:
                bases.append(public)
    return bases


def process_bases(app: Sphinx, name: str, obj: object, options: Any, bases: list[type]) -> None:
    """Replace private base classes by their nearest public ancestors."""
    if isinstance(obj, type) and any(not _is_public(base) for base in bases):
        bases[:] = [base for base in _public_bases(obj) if base is not object]


def drop_object_base(app: Sphinx, doctree: nodes.document) -> None:
    """Remove the "Bases: object" lines: every class has that base."""
    for paragraph in list(doctree.findall(nodes.paragraph)):
        if paragraph.astext() == "Bases: object":
            paragraph.parent.remove(paragraph)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the handlers."""
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autodoc-process-signature", process_signature)
    app.connect("autodoc-process-bases", process_bases)
    app.connect("doctree-read", drop_object_base)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
