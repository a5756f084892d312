"""SIGINT and SIGTERM stop an ASGIServer gracefully.

The server runs in a process of its own
(:mod:`tests.test_server.asgi_server_process`, on the test's backend). Once
signalled it stops accepting connections, lets the 2-second responses in
flight (one per HTTP version) finish, and exits with status 0 and no traceback.
"""

from __future__ import annotations

import signal

import anyio
import pytest

from hface.common import AddressType
from hface.events import HeadersReceived
from tests.helpers.certs import TLSFiles
from tests.test_server.asgi_server_process import GRACE, read_port, server_process
from tests.test_server.conftest import Response, client, read_response, send_request

pytestmark = pytest.mark.anyio

SLOW_BODY = b"tick\n" * 4 + b"done\n"
VERSIONS = ("1.1", "2", "3")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_lets_requests_in_flight_finish(
    signum: signal.Signals, anyio_backend: str, tls_files: TLSFiles
) -> None:
    certfile, keyfile = tls_files.server_cert_file, tls_files.server_key_file
    with server_process(anyio_backend, certfile, keyfile) as process:
        address = ("127.0.0.1", await read_port(process))
        responses: dict[str, Response] = {}
        started: list[str] = []
        all_started = anyio.Event()

        async def slow_request(http_version: str) -> None:
            async with client(http_version, address, tls_files.client_config()) as connection:
                stream_id = await send_request(connection, path=b"/slow")
                event = await connection.receive_event()
                assert isinstance(event, HeadersReceived), event
                started.append(http_version)
                if len(started) == len(VERSIONS):
                    all_started.set()
                rest = await read_response(connection, stream_id)
                responses[http_version] = rest

        with anyio.fail_after(GRACE + 5):
            async with anyio.create_task_group() as task_group:
                for version in VERSIONS:
                    task_group.start_soon(slow_request, version)
                await all_started.wait()
                process.send_signal(signum)
                await anyio.sleep(0.5)
                assert process.poll() is None, "exited with responses in flight"
                await assert_refused(address)
            returncode = await anyio.to_thread.run_sync(process.wait)
        _, stderr = process.communicate()
    for version in VERSIONS:
        response = responses[version]
        assert (response.reset, response.terminated) == (None, False), version
        assert response.body == SLOW_BODY, (version, response.body)
    assert returncode == 0, stderr
    assert f"received {signum.name}, shutting down" in stderr
    assert "Traceback" not in stderr, stderr


async def assert_refused(address: AddressType) -> None:
    """Assert that nothing accepts TCP connections on ``address`` any more."""
    try:
        stream = await anyio.connect_tcp(*address)
    except OSError:
        return
    await stream.aclose()
    raise AssertionError(f"{address} still accepts connections")


async def test_a_signal_at_rest_stops_the_server_at_once(
    anyio_backend: str, tls_files: TLSFiles
) -> None:
    certfile, keyfile = tls_files.server_cert_file, tls_files.server_key_file
    with server_process(anyio_backend, certfile, keyfile) as process:
        await read_port(process)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(2):  # nothing in flight: no grace period to wait out
            returncode = await anyio.to_thread.run_sync(process.wait)
        _, stderr = process.communicate()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
