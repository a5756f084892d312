"""Guards over the source of the whole tree: sizes, typed options, errors classified by type.

- No product module over :data:`MAX_LINES` lines (split by concern well before).
- No ``**options: Any`` in a public signature: options are typed (frozen
  settings, keyword parameters), so a typo is an error, not a silent no-op.
- No test over an exception's or an event's message text: a layer that
  needs to know what happened reads the type and the fields (``kind``,
  ``reason``, ``error_code``, ``transport_error_code``), never another
  layer's words, which change with a rewording or a library release.

Each guard has an allow-list of what is known and being removed elsewhere;
the lists only shrink (a test fails once an entry is no longer needed).
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.source import Module, product_modules

#: The most lines a product module may have.
MAX_LINES: Final = 600

#: Modules over MAX_LINES, being split by concern (issue 13).
OVERSIZED: Final[dict[str, str]] = {}

#: Public signatures that still take ``**options: Any`` (typed settings replace them).
UNTYPED_OPTIONS: Final[frozenset[str]] = frozenset()

#: Where a message is read, by ``module.function``: only where the layer
#: that wrote it (or that calls the library that did) translates it.
MESSAGE_READERS: Final = {
    "hface.protocols.http1._httptools.LLHTTPRequestParser._on_parse_error": (
        "llhttp's errors carry only a message: the protocol that calls httptools "
        "translates them into a status, at the library's boundary"
    ),
}


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return product_modules()


# -- module size ------------------------------------------------------------------------


def oversized(modules: dict[str, Module]) -> dict[str, int]:
    """Modules over :data:`MAX_LINES` lines, with their length."""
    lengths = {name: len(module.path.read_text().splitlines()) for name, module in modules.items()}
    return {name: length for name, length in lengths.items() if length > MAX_LINES}


def test_no_module_over_the_limit(modules: dict[str, Module]) -> None:
    found = {name: length for name, length in oversized(modules).items() if name not in OVERSIZED}
    assert not found, f"over {MAX_LINES} lines, split by concern: {found}"


def test_oversized_modules_are_still_oversized(modules: dict[str, Module]) -> None:
    """A module that was split leaves OVERSIZED (which only shrinks)."""
    gone = sorted(set(OVERSIZED) - set(oversized(modules)))
    assert not gone, f"within {MAX_LINES} lines now (or gone), remove from OVERSIZED: {gone}"


# -- typed options ---------------------------------------------------------------------


def _exported(modules: dict[str, Module]) -> set[str]:
    """The names in the ``__all__`` of every public module (no ``_`` in its name)."""
    names: set[str] = set()
    for module in modules.values():
        if any(part.startswith("_") and part != "__main__" for part in module.name.split(".")):
            continue
        for node in module.tree().body:
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
            ):
                names.update(ast.literal_eval(node.value))
    return names


def _public_functions(module: Module, exported: set[str]) -> Iterator[tuple[str, ast.arguments]]:
    """``(qualified name, arguments)`` of the public functions and methods ``module`` defines."""
    for node in module.tree().body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in exported:
            yield f"{module.name}.{node.name}", node.args
        elif isinstance(node, ast.ClassDef) and node.name in exported:
            for item in node.body:
                if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                dunder = item.name.startswith("__") and item.name.endswith("__")
                if dunder or not item.name.startswith("_"):
                    yield f"{module.name}.{node.name}.{item.name}", item.args


def _is_any(annotation: ast.expr | None) -> bool:
    if annotation is None:
        return True  # untyped is Any too
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    return (isinstance(annotation, ast.Name) and annotation.id == "Any") or (
        isinstance(annotation, ast.Attribute) and annotation.attr == "Any"
    )


def untyped_options(modules: dict[str, Module]) -> set[str]:
    """Public functions and methods with ``**name: Any`` (or an unannotated ``**name``)."""
    exported = _exported(modules)
    found = set()
    for module in modules.values():
        for name, arguments in _public_functions(module, exported):
            if arguments.kwarg is not None and _is_any(arguments.kwarg.annotation):
                found.add(name)
    return found


def test_no_untyped_options_in_public_signatures(modules: dict[str, Module]) -> None:
    found = sorted(untyped_options(modules) - UNTYPED_OPTIONS)
    assert not found, f"**options: Any in a public signature (type the options): {found}"


def test_untyped_options_are_still_there(modules: dict[str, Module]) -> None:
    """A signature that was typed leaves UNTYPED_OPTIONS (which only shrinks)."""
    gone = sorted(UNTYPED_OPTIONS - untyped_options(modules))
    assert not gone, f"typed now (or gone), remove from UNTYPED_OPTIONS: {gone}"


# -- errors classified by type, not by message -------------------------------------------

#: Attributes that hold the text of an exception or an event.
_TEXT_ATTRIBUTES: Final = frozenset(
    {"message", "args", "reason_phrase", "verify_message", "strerror"}
)
#: String methods that test or take apart a text.
_TEXT_METHODS: Final = frozenset(
    {"startswith", "endswith", "find", "rfind", "index", "rindex", "count", "partition"}
    | {"rpartition", "split", "rsplit", "replace", "removeprefix", "removesuffix"}
)
#: Names that hold an exception or an event wherever they are used.
_ERROR_NAMES: Final = frozenset({"exc", "error", "err", "exception", "cause", "failure", "event"})
#: Methods of ``re`` and of compiled patterns that match a text.
_MATCHERS: Final = frozenset({"match", "search", "fullmatch", "findall", "finditer", "sub", "subn"})


class _MessageReads(ast.NodeVisitor):
    """Finds the tests of message text in one module, by function.

    A *text* is ``str(x)`` or ``repr(x)`` of an exception or an event (a
    name bound by ``except ... as`` or named ``exc``, ``error``, ``event``
    ...), an attribute such as ``.message`` or ``.args``, a ``message: str``
    parameter, or a name given a value made from any of these in the same
    function. A *test* of a text is
    ``in``/``not in`` on it (a substring), ``==``/``!=`` against it, a
    regular expression over it, a string method that looks into it, or
    ``if str(x):``.
    """

    def __init__(self, module: Module) -> None:
        self.module = module
        self.found: list[tuple[str, int, str]] = []
        self._scope: list[str] = []
        self._texts: list[set[str]] = [set()]
        self._errors: list[set[str]] = [set(_ERROR_NAMES)]

    # -- scopes --

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._scope.append(node.name)
        texts = {
            argument.arg
            for argument in (*node.args.args, *node.args.kwonlyargs)
            if argument.arg == "message"
            and isinstance(argument.annotation, ast.Name | ast.Constant)
            and "str" in ast.unparse(argument.annotation)
        }
        self._texts.append(texts)
        self._errors.append(set(_ERROR_NAMES))
        self.generic_visit(node)
        self._errors.pop()
        self._texts.pop()
        self._scope.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    # -- what is a text --

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None:
            self._errors[-1].add(node.name)
        self.generic_visit(node)

    def _is_error(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in ("__cause__", "__context__")
        return isinstance(node, ast.Name) and node.id in self._errors[-1]

    def _is_text(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in ("str", "repr") or len(node.args) != 1:
                return False
            return self._is_error(node.args[0])
        if isinstance(node, ast.Attribute):
            return node.attr in _TEXT_ATTRIBUTES
        if isinstance(node, ast.Subscript):
            return self._is_text(node.value)
        if isinstance(node, ast.Name):
            return node.id in self._texts[-1]
        return False

    def _has_text(self, node: ast.expr) -> bool:
        return any(isinstance(sub, ast.expr) and self._is_text(sub) for sub in ast.walk(node))

    def _note(self, node: ast.AST, what: str) -> None:
        function = ".".join(self._scope)
        self.found.append((function, getattr(node, "lineno", 0), what))

    # -- names made from texts --

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        if self._has_text(node.value):
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        self._texts[-1].add(sub.id)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        target = node.target
        if node.value is not None and self._has_text(node.value) and isinstance(target, ast.Name):
            self._texts[-1].add(target.id)

    # -- tests of texts --

    def visit_Compare(self, node: ast.Compare) -> None:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        for op, (left, right) in zip(node.ops, itertools.pairwise(operands), strict=True):
            contains = isinstance(op, ast.In | ast.NotIn)
            equals = isinstance(op, ast.Eq | ast.NotEq)
            to_none = any(isinstance(x, ast.Constant) and x.value is None for x in (left, right))
            if contains and self._is_text(right):
                self._note(node, f"a substring test: {ast.unparse(node)}")
            elif (
                (contains and self._is_text(left))
                or (equals and (self._is_text(left) or self._is_text(right)))
            ) and not to_none:
                self._note(node, f"a comparison of a text: {ast.unparse(node)}")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if not isinstance(func, ast.Attribute):
            return
        if func.attr in _TEXT_METHODS and self._is_text(func.value):
            self._note(node, f"a string method on a text: {ast.unparse(node)}")
        elif func.attr in _MATCHERS:
            if isinstance(func.value, ast.Name) and func.value.id == "re":
                subject = node.args[1] if len(node.args) > 1 else None
            else:
                subject = node.args[0] if node.args else None
            if subject is not None and self._has_text(subject):
                self._note(node, f"a regular expression over a text: {ast.unparse(node)}")

    def _test(self, test: ast.expr) -> None:
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            test = test.operand
        if isinstance(test, ast.Call) and self._is_text(test):
            self._note(test, f"a test of whether a message is empty: {ast.unparse(test)}")

    def visit_If(self, node: ast.If) -> None:
        self._test(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._test(node.test)
        self.generic_visit(node)


def message_reads(modules: dict[str, Module]) -> dict[str, list[str]]:
    """Tests of message text, by ``module.function``: ``path:line: what``."""
    found: dict[str, list[str]] = {}
    for module in modules.values():
        visitor = _MessageReads(module)
        visitor.visit(module.tree())
        for function, line, what in visitor.found:
            where = f"{module.name}.{function}" if function else module.name
            found.setdefault(where, []).append(f"{module.relative_path}:{line}: {what}")
    return found


def test_errors_are_classified_by_type_not_by_message(modules: dict[str, Module]) -> None:
    found = {
        where: lines
        for where, lines in message_reads(modules).items()
        if where not in MESSAGE_READERS
    }
    report = "\n".join(line for lines in found.values() for line in lines)
    assert not found, (
        "a message is read to find out what happened; read the error's type and "
        f"fields instead (kind, reason, error_code):\n{report}"
    )


def test_message_readers_are_still_needed(modules: dict[str, Module]) -> None:
    """An allowed reader that no longer reads a message leaves MESSAGE_READERS."""
    gone = sorted(set(MESSAGE_READERS) - set(message_reads(modules)))
    assert not gone, f"reads no message now (or gone), remove from MESSAGE_READERS: {gone}"


# -- the guards themselves -------------------------------------------------------------


def _module(tmp_path: Path, text: str, name: str = "client/_x.py") -> dict[str, Module]:
    path = tmp_path / "packages" / "dist" / "src" / "hface" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return product_modules(tmp_path)


@pytest.mark.parametrize(
    "code",
    [
        'if "peer closed" in str(exc): pass',
        'if "ConnectionClosed" not in event.message: pass',
        "words = ('lost', 'closed')\nif any(w in event.message for w in words): pass",
        'text = str(exc)\nif text.startswith("cannot connect"): pass',
        "match = PATTERN.search(str(exc))",
        'try:\n    pass\nexcept OSError as oops:\n    if "refused" in str(oops): pass',
        'match = re.match(r"QUIC transport error (0x[0-9a-f]+)", exc.args[0])',
        'reason = str(exc) or "?"\nif reason == _KNOWN: pass',
        "if str(exc): raise",
        'new = str(exc).replace("the proxy", "the proxy (tunnel)")',
    ],
)
def test_the_guard_sees_message_reads(tmp_path: Path, code: str) -> None:
    text = "def classify(exc, event):\n" + textwrap.indent(code, "    ") + "\n"
    assert list(message_reads(_module(tmp_path, text))) == ["hface.client._x.classify"]


@pytest.mark.parametrize(
    "code",
    [
        'raise ValueError(f"cannot connect: {exc}") from exc',
        "reason = str(exc) or type(exc).__name__",
        'detail = f": {event.message}" if event.message else ""',
        "if event.reason is TerminationReason.CLOSED_BY_PEER: pass",
        "if exc.kind is TransportErrorKind.TLS_HANDSHAKE: pass",
        'if "type" in scope: pass',
        "if event.message is None: pass",
        "if getattr(exc, 'origin', None) == str(proxy): pass",
        "address = (str(sockaddr[0]), 80)\nif address not in seen: pass",
    ],
)
def test_the_guard_lets_messages_be_written(tmp_path: Path, code: str) -> None:
    text = "def build(exc, event, scope):\n" + textwrap.indent(code, "    ") + "\n"
    assert message_reads(_module(tmp_path, text)) == {}


def test_the_other_guards_see_their_offences(tmp_path: Path) -> None:
    exports = "from ._x import Opener as Opener\n__all__ = ('Opener',)\n"
    _module(tmp_path, exports, "client/__init__.py")
    modules = _module(
        tmp_path,
        """
        from typing import Any
        class Opener:
            def __init__(self, **options: Any) -> None: ...
            def _private(self, **options: Any) -> None: ...
        class _Hidden:
            def __init__(self, **options: Any) -> None: ...
        """
        + "\n" * MAX_LINES,
    )
    assert untyped_options(modules) == {"hface.client._x.Opener.__init__"}
    assert set(oversized(modules)) == {"hface.client._x"}
