"""Finding the ASGI application the user names, as uvicorn takes it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


class AppImportError(Exception):
    """The application could not be imported; the message says why."""


def import_app(spec: str) -> Callable[..., Any]:
    """Import ``module:attribute``, or ``module`` with ``application`` or ``app`` in it.

    The current directory is searched first, as ``python -m`` would.

    :raises AppImportError: with the import error's own message.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise AppImportError(f"invalid application {spec!r}: expected module or module:attribute")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AppImportError(f"cannot import {module_name!r}: {error}") from None
    except Exception as error:
        raise AppImportError(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    names = [attribute] if attribute else ["application", "app"]
    for name in names:
        app = getattr(module, name, None)
        if app is not None:
            if not callable(app):
                raise AppImportError(f"{module_name}:{name} is not an ASGI application")
            return app  # type: ignore[no-any-return]  # any callable the user names
    wanted = " or ".join(repr(name) for name in names)
    raise AppImportError(f"module {module_name!r} has no attribute {wanted}")
