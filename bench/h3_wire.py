"""What crosses the wire per HTTP/3 request: datagrams, bytes and frames by type.

Usage (from the repository root; needs tshark, Debian package tshark)::

    hatch run bench:h3-wire [--server hypercorn|hface] [--client h3load|loadgen] \\
        [-c 10] [-m 10] [-d 3] [--loop asyncio|uvloop]

For each server and client asked for (both of each by default), this
starts the server on core 0 (``bench/_keylog.py`` makes its aioquic
connections log their TLS secrets), captures its UDP port on the loopback
interface with tshark, runs the load client on core 1 (``h3load.py`` on
aioquic alone or ``loadgen.py`` on hface's client) for ``-d`` seconds,
then decrypts the capture and counts, per direction and per request
(requests: the FIN-carrying request streams the client sent): datagrams,
UDP payload bytes, QUIC packets, QUIC frames by type, and STREAM frames
by what the stream carries (requests and responses, the HTTP/3 control
streams, the QPACK encoder and decoder streams, RFC 9204 §4.2).

A first run of the same load without the capture measures the server's
CPU time per request (capturing costs the sender kernel time); this is
what the counts explain. Everything binds 127.0.0.1 and every process is
stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from _cpu import CPUSampler
from _servers import (
    HYPERCORN_CONFIG,
    LOOPS,
    ROOT,
    Certificates,
    free_port,
    make_certificates,
    start_process,
    stop_process,
    wait_until_listening,
)
from _tools import Measure, h3load, loadgen

#: QUIC frame types (RFC 9000 §19, §12.4) by number; STREAM is 0x08-0x0f.
FRAME_NAMES: Final = {
    0x00: "PADDING",
    0x01: "PING",
    0x02: "ACK",
    0x03: "ACK",
    0x04: "RESET_STREAM",
    0x05: "STOP_SENDING",
    0x06: "CRYPTO",
    0x07: "NEW_TOKEN",
    0x10: "MAX_DATA",
    0x11: "MAX_STREAM_DATA",
    0x12: "MAX_STREAMS",
    0x13: "MAX_STREAMS",
    0x14: "DATA_BLOCKED",
    0x15: "STREAM_DATA_BLOCKED",
    0x16: "STREAMS_BLOCKED",
    0x17: "STREAMS_BLOCKED",
    0x18: "NEW_CONNECTION_ID",
    0x19: "RETIRE_CONNECTION_ID",
    0x1A: "PATH_CHALLENGE",
    0x1B: "PATH_RESPONSE",
    0x1C: "CONNECTION_CLOSE",
    0x1D: "CONNECTION_CLOSE",
    0x1E: "HANDSHAKE_DONE",
}
#: Unidirectional stream IDs of a connection by what they carry (RFC 9114
#: §6.2, RFC 9204 §4.2), in the order aioquic and hface open them.
UNI_STREAMS: Final = {
    2: "control",
    6: "QPACK encoder",
    10: "QPACK decoder",
    3: "control",
    7: "QPACK encoder",
    11: "QPACK decoder",
}
SERVERS: Final = ("hypercorn", "hface")
#: The load clients: h3load as aioquic's examples talk, h3load doing one or
#: both of the things hface's client does (see h3load.Mimicry), loadgen.
CLIENTS: Final = {
    "h3load": (),
    "h3load-split": ("--datagram-per-request",),
    "h3load-split-eager": ("--datagram-per-request", "--eager-acks"),
    "loadgen": (),
}


@dataclass
class Direction:
    """What one side sent."""

    datagrams: int = 0
    payload_bytes: int = 0
    packets: int = 0
    frames: Counter[str] = field(default_factory=Counter)
    #: Datagrams by the QUIC frames they hold (e.g. ``ACK only``, ``request``).
    kinds: Counter[str] = field(default_factory=Counter)


@dataclass
class Wire:
    """A decrypted capture, counted."""

    requests: int = 0
    #: STREAM frames that repeat an offset already sent on their stream (resent after a loss).
    resent: Counter[str] = field(default_factory=Counter)
    client: Direction = field(default_factory=Direction)
    server: Direction = field(default_factory=Direction)


def _split(value: str) -> list[str]:
    return [item for item in value.split(",") if item] if value else []


def count_capture(capture: Path, keylog: Path, server_port: int) -> Wire:
    """Decrypt ``capture`` with ``keylog`` and count what each side sent.

    :raises RuntimeError: if tshark fails.
    """
    fields = ["udp.srcport", "udp.dstport", "udp.length", "quic.packet_length"]
    fields += ["quic.frame_type", "quic.stream.stream_id", "quic.stream.fin"]
    fields += ["quic.stream.off", "quic.stream.offset"]
    argv = ["tshark", "-r", str(capture), "-o", f"tls.keylog_file:{keylog}", "-T", "fields"]
    argv += ["-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in fields:
        argv += ["-e", name]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"tshark failed: {result.stderr.strip()[-300:]}")
    wire = Wire()
    seen: set[tuple[str, str, int, int]] = set()
    for line in result.stdout.splitlines():
        source, target, length, packets, types, ids, fins, offs, offsets = line.split("|")
        from_server = int(source) == server_port
        side = wire.server if from_server else wire.client
        client_port = target if from_server else source  # one socket per connection
        side.datagrams += 1
        side.payload_bytes += int(length) - 8  # the UDP header
        side.packets += max(len(_split(packets)), 1)
        streams = iter(zip(_split(ids), _split(fins), _split(offs), strict=False))
        offset_values = iter(_split(offsets))
        names = []
        for text in _split(types):
            number = int(text)
            if 0x08 <= number <= 0x0F:
                stream_id, fin, has_offset = next(streams, ("-1", "0", "0"))
                offset = int(next(offset_values, "0")) if _true(has_offset) else 0
                name = _stream_kind(int(stream_id))
                key = (client_port, "server" if from_server else "client", int(stream_id), offset)
                if key in seen:
                    wire.resent[f"{key[1]} {name}"] += 1
                    name = f"{name} (resent)"
                seen.add(key)
                if side is wire.client and name == "STREAM request" and _true(fin):
                    wire.requests += 1
            else:
                name = FRAME_NAMES.get(number, f"0x{number:x}")
            side.frames[name] += 1
            names.append(name)
        side.kinds[_datagram_kind(names)] += 1
    return wire


def _true(flag: str) -> bool:
    return flag in ("1", "True")


def _stream_kind(stream_id: int) -> str:
    if stream_id % 4 == 0:
        return "STREAM request"  # client-initiated bidirectional: one request each
    return f"STREAM {UNI_STREAMS.get(stream_id, 'other uni')}"


def _datagram_kind(names: Sequence[str]) -> str:
    kinds = sorted(set(names) - {"PADDING"})
    return " + ".join(kinds) if kinds else "PADDING only"


def render(label: str, wire: Wire, cpu_per_request: float, rps: float) -> str:
    """The counts of one capture, per request, as text."""
    n = max(wire.requests, 1)
    lines = [
        f"== {label}: {wire.requests} requests captured; server CPU without capture "
        f"{cpu_per_request * 1e6:,.0f} µs/request at {rps:,.0f} req/s",
        f"{'per request':34} {'client->server':>15} {'server->client':>15}",
    ]

    def row(name: str, client: float, server: float) -> None:
        lines.append(f"{name:34} {client / n:15.2f} {server / n:15.2f}")

    row("datagrams", wire.client.datagrams, wire.server.datagrams)
    row("UDP payload bytes", wire.client.payload_bytes, wire.server.payload_bytes)
    row("QUIC packets", wire.client.packets, wire.server.packets)
    for name in sorted(set(wire.client.frames) | set(wire.server.frames)):
        row(f"  frames {name}", wire.client.frames[name], wire.server.frames[name])
    lines.append("datagrams by content, per request:")
    kinds = Counter(wire.client.kinds) + Counter(wire.server.kinds)
    for kind, _ in kinds.most_common(8):
        row(f"  {kind}"[:34], wire.client.kinds[kind], wire.server.kinds[kind])
    return "\n".join(lines)


@contextmanager
def _server(
    name: str, port: int, certs: Certificates, loop: str, keylog: Path, logs: Path
) -> Iterator[subprocess.Popen[bytes]]:
    runner = [sys.executable, str(ROOT / "bench" / "_keylog.py"), str(keylog), "-m"]
    host = f"127.0.0.1:{port}"
    if name == "hypercorn":
        argv = [*runner, "hypercorn", "bench.app:app", "--config", str(HYPERCORN_CONFIG)]
        argv += ["--workers", "0", "--worker-class", loop, "--log-level", "warning"]
        argv += ["--bind", host, "--quic-bind", host]
        argv += ["--certfile", certs.certfile, "--keyfile", certs.keyfile]
    else:
        argv = [*runner, "hface", "server", "bench.app:app", f"https://{host}"]
        argv += ["--no-access-log", "--log-level", "warning", "--backend", loop]
        argv += ["--cert", certs.certfile, "--key", certs.keyfile]
    log_file = logs / f"{name}.log"
    with start_process(argv, log_file=log_file) as process:
        wait_until_listening(process, port, udp=True, log_file=log_file)
        time.sleep(0.3)
        yield process


@contextmanager
def _capture(port: int, path: Path, logs: Path) -> Iterator[None]:
    argv = ["tshark", "-i", "lo", "-f", f"udp port {port}", "-w", str(path), "-q"]
    with (logs / "tshark.log").open("ab") as log:
        # Its own session, so that stop_process() can signal its group.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5)  # capturing has started once the file exists; give it a moment
        yield
        time.sleep(0.5)
    finally:
        stop_process(process)


def _load(client: str, url: str, args: argparse.Namespace, cafile: str) -> Measure:
    c, m, d = args.connections, args.streams, args.duration
    if client == "loadgen":
        return loadgen(url, http_version="3", connections=c, streams=m, duration=d, cafile=cafile)
    options = CLIENTS[client]
    return h3load(url, connections=c, streams=m, duration=d, cafile=cafile, options=options)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and count each server x client asked for; print the counts."""
    parser = argparse.ArgumentParser(
        prog="h3_wire", description=(__doc__ or "").split("\n", maxsplit=1)[0]
    )
    parser.add_argument("--server", choices=SERVERS, action="append", help="(repeatable)")
    parser.add_argument("--client", choices=list(CLIENTS), action="append", help="(repeatable)")
    parser.add_argument("-c", "--connections", type=int, default=10)
    parser.add_argument("-m", "--streams", type=int, default=10)
    parser.add_argument("-d", "--duration", type=float, default=3.0)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 30 or not 1 <= args.connections * args.streams <= 1000:
        parser.error("-d must be in [1, 30] and -c x -m in [1, 1000]")
    if shutil.which("tshark") is None:
        print("h3_wire: error: tshark is not installed (Debian package tshark)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hface-h3-wire-") as directory:
        work = Path(directory)
        certs = make_certificates(work / "certs")
        for server in args.server or SERVERS:
            for client in args.client or list(CLIENTS):
                port = free_port()
                keylog, capture = work / f"{server}-{client}.keys", work / f"{server}-{client}.pcap"
                with _server(server, port, certs, args.loop, keylog, work) as process:
                    url = f"https://127.0.0.1:{port}/"
                    with CPUSampler(process.pid) as sampler:
                        measure = _load(client, url, args, certs.cafile)
                    assert measure.window is not None
                    cpu = sampler.cpu_between(*measure.window)
                    per_request = cpu / (measure.rps * (measure.window[1] - measure.window[0]))
                    with _capture(port, capture, work):
                        _load(client, url, args, certs.cafile)
                wire = count_capture(capture, keylog, port)
                label = f"{server} ({args.loop}) <- {client} -c{args.connections} -m{args.streams}"
                print(render(label, wire, per_request, measure.rps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
