"""What a failed listen, connect or TLS handshake carries: kind, address, reason, cause.

The message is for people; a layer above reads the fields (and builds its
own message from them), so each failure is checked for both. Every test
runs over each stream implementation (see conftest.py).
"""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from hface.common import ClientTLSConfig
from hface.errors import TransportError, TransportErrorKind
from hface.networking import TLSVerificationError
from tests.helpers.certs import TLSFiles
from tests.helpers.network import NetworkingFactory
from tests.helpers.peers import free_port

from .test_tls import ALPN, tls_server

pytestmark = pytest.mark.anyio


async def test_connect_refused(networking: NetworkingFactory) -> None:
    address = ("127.0.0.1", free_port())
    with pytest.raises(TransportError) as info:
        await networking().connect_tcp(address)
    error = info.value
    assert error.kind is TransportErrorKind.CONNECT
    assert error.address == address
    cause = error.__cause__
    assert isinstance(cause, OSError)
    # The operating system's words, without Python's "[Errno 111]".
    assert error.reason == (cause.strerror or str(cause))
    assert "Errno" not in error.reason
    assert str(error) == f"cannot connect to 127.0.0.1:{address[1]}: {error.reason}"
    assert error.termination is None
    assert error.transport_error_code is None


async def test_listen_on_a_port_in_use(networking: NetworkingFactory) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as taken:
        address = ("127.0.0.1", taken.extra(SocketAttribute.local_port))
        with pytest.raises(TransportError) as info:
            await networking().listen_tcp(address)
    error = info.value
    assert error.kind is TransportErrorKind.LISTEN
    assert error.address == address
    assert isinstance(error.__cause__, OSError)
    assert str(error) == f"cannot listen on 127.0.0.1:{address[1]}: {error.reason}"


async def test_tls_handshake_with_a_server_that_does_not_speak_tls(
    networking: NetworkingFactory,
) -> None:
    async def answer_in_cleartext(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    address = ("127.0.0.1", listener.extra(SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, answer_in_cleartext)
        with anyio.fail_after(10), pytest.raises(TransportError) as info:
            await networking().connect_tcp_tls(
                address, tls_config=ClientTLSConfig(insecure=True), alpn_protocols=ALPN
            )
        task_group.cancel_scope.cancel()
    error = info.value
    assert error.kind is TransportErrorKind.TLS_HANDSHAKE
    assert not isinstance(error, TLSVerificationError)
    assert error.address == address
    assert error.reason
    assert str(error) == f"TLS handshake with 127.0.0.1:{address[1]} failed: {error.reason}"
    assert error.__cause__ is not None


async def test_untrusted_certificate(tls_files: TLSFiles, networking: NetworkingFactory) -> None:
    async with tls_server(tls_files.server_config(), networking) as address:
        # The system's CAs do not include the test CA.
        with pytest.raises(TLSVerificationError) as info:
            await networking().connect_tcp_tls(
                address, tls_config=ClientTLSConfig(), alpn_protocols=ALPN
            )
    error = info.value
    assert error.kind is TransportErrorKind.TLS_VERIFICATION
    assert error.address == address
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert error.reason == error.__cause__.verify_message
    assert "certificate" in error.reason
    assert str(error) == f"cannot verify the TLS certificate of {address[0]}:{address[1]}: " + (
        error.reason
    )


def test_the_fields_default_to_unknown() -> None:
    error = TransportError("the connection was closed")
    assert (error.kind, error.address, error.reason) == (TransportErrorKind.BROKEN, None, None)
    assert (error.termination, error.transport_error_code) == (None, None)
    verification = TLSVerificationError("untrusted", reason="self-signed certificate")
    assert verification.kind is TransportErrorKind.TLS_VERIFICATION
    assert verification.reason == "self-signed certificate"
