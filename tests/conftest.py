"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from tests.helpers.certs import TLSFiles, make_tls_files


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every anyio test on asyncio and on Trio."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA, a server certificate (localhost, 127.0.0.1, ::1) and a client certificate."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_tls_config(tls_files: TLSFiles) -> ServerTLSConfig:
    """The test server's certificate and key."""
    return tls_files.server_config()


@pytest.fixture
def client_tls_config(tls_files: TLSFiles) -> ClientTLSConfig:
    """A client configuration trusting the test CA."""
    return tls_files.client_config()
