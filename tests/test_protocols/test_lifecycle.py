"""The lifecycle contract every protocol follows (hface.protocols._lifecycle)."""

from __future__ import annotations

import pytest

from hface.errors import LocalProtocolError
from hface.protocols import ConnectionState
from hface.protocols._lifecycle import Lifecycle, LifecycleInput

_TABLE = {
    (ConnectionState.OPEN, LifecycleInput.SUBMIT_GOAWAY): ConnectionState.DRAINING,
    (ConnectionState.DRAINING, LifecycleInput.STREAMS_DONE): ConnectionState.CLOSING,
    (ConnectionState.CLOSING, LifecycleInput.CLOSE_SENT): ConnectionState.CLOSED,
}


def test_a_lifecycle_moves_only_through_its_table() -> None:
    lifecycle = Lifecycle(_TABLE)
    assert lifecycle.state.value == "open"
    assert lifecycle.takes(LifecycleInput.SUBMIT_GOAWAY)
    assert not lifecycle.takes(LifecycleInput.CLOSE_SENT)
    assert lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY) is ConnectionState.DRAINING
    with pytest.raises(LocalProtocolError, match="draining cannot take submit_goaway"):
        lifecycle.handle(LifecycleInput.SUBMIT_GOAWAY)
    assert lifecycle.state.value == "draining"
    lifecycle.handle(LifecycleInput.STREAMS_DONE)
    assert lifecycle.handle(LifecycleInput.CLOSE_SENT) is ConnectionState.CLOSED
