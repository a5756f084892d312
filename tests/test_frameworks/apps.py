"""The example applications of examples/frameworks, loaded for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: examples/frameworks: one application per framework (docs/frameworks/).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "frameworks"


def load_example(name: str) -> ModuleType:
    """Import ``examples/frameworks/<name>.py`` as the module ``name`` (once)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
