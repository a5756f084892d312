"""``hface client``'s debugging aids: ``SSLKEYLOGFILE`` and ``--qlog-dir``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_client.test_debugging import TLS13_LABELS, read_keylog, read_qlog

from .test_client_command import VERSIONS, Servers, hface_client, ok, one_line_error
from .test_client_command import servers as servers  # the fixture


@pytest.mark.parametrize("version", list(VERSIONS))
def test_sslkeylogfile(version: str, servers: Servers, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    environment = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    result = hface_client(
        VERSIONS[version], "--cacert", servers.cafile, servers.https + "/", env=environment
    )
    ok(result)
    (labels,) = read_keylog(keylog).values()
    assert labels >= TLS13_LABELS


def test_qlog_dir(servers: Servers, tmp_path: Path) -> None:
    args = ("--http3", "--cacert", servers.cafile, "--qlog-dir", str(tmp_path))
    ok(hface_client(*args, servers.https + "/"))
    (trace,) = read_qlog(tmp_path)["traces"]
    assert trace["vantage_point"]["type"] == "client"


def test_qlog_dir_missing(servers: Servers, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = hface_client("--http3", "--qlog-dir", str(missing), servers.https + "/")
    assert result.returncode == 26
    assert "is not a directory" in one_line_error(result)
