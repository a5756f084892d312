"""QUIC datagrams reach the socket of their connection ID in a SO_REUSEPORT group.

Real UDP sockets on loopback: a group of sockets bound to one port with the
steering program attached, and clients sending datagrams shaped as QUIC
long- and short-header packets. Each test asks which socket of the group
received each datagram.
"""

from __future__ import annotations

import os
import select
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest

from hface.networking._connection_ids import (
    CHECK_KEY,
    ConnectionIDLayout,
    connection_id_slot,
    make_connection_id,
)
from hface.networking._quic_steering import (
    QUICSteeringUnavailable,
    attach_steering_program,
    build_steering_program,
    steering_unavailable_reason,
)
from tests.helpers.network import LOOPBACK_HOSTS

UNAVAILABLE = steering_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no steering: {UNAVAILABLE}")

GROUP_SIZE = 4
LAYOUT = ConnectionIDLayout()
VERSION_1 = b"\x00\x00\x00\x01"


def initial(destination: bytes, *, size: int = 1200) -> bytes:
    """A client's Initial packet (RFC 9000 §17.2.2): long header, type 0, padded to ``size``."""
    source = os.urandom(8)
    header = b"\xc3" + VERSION_1 + bytes((len(destination),)) + destination + b"\x08" + source
    return header.ljust(size, b"\x00")


def handshake(destination: bytes) -> bytes:
    """A Handshake packet (long header, type 2)."""
    return b"\xe3" + VERSION_1 + bytes((len(destination),)) + destination + b"\x00" + b"h" * 60


def short(destination: bytes) -> bytes:
    """A 1-RTT packet (short header, RFC 9000 §17.3): the ID right after the first byte."""
    return b"\x43" + destination + b"s" * 40


class Group:
    """A SO_REUSEPORT group of UDP sockets on one loopback port, and clients to send from."""

    def __init__(self, host: str, size: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sockets: list[socket.socket] = []
        port = 0
        for _ in range(size):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.setblocking(False)
            self.sockets.append(sock)
        self.address = (host, port)
        self.clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
        for client in self.clients:
            client.bind((host, 0))

    def steer(
        self,
        *,
        live: Sequence[int],
        accepting: Sequence[int],
        layout: ConnectionIDLayout = LAYOUT,
    ) -> None:
        program = build_steering_program(layout, live=live, accepting=accepting)
        attach_steering_program(self.sockets[0], program)

    def receiver(self, datagram: bytes, *, client: int = 0) -> int:
        """Send ``datagram`` from client ``client``; the index of the socket that received it."""
        self.clients[client].sendto(datagram, self.address)
        readable, _, _ = select.select(self.sockets, [], [], 2.0)
        assert len(readable) == 1, f"{len(readable)} sockets received the datagram"
        assert readable[0].recv(65536) == datagram
        return self.sockets.index(readable[0])

    def close(self) -> None:
        for sock in self.sockets + self.clients:
            sock.close()


@pytest.fixture(params=LOOPBACK_HOSTS)
def group(request: pytest.FixtureRequest) -> Iterator[Group]:
    group = Group(request.param, GROUP_SIZE)
    # In reverse, so that no test passes by the luck of an ID's hash matching its slot.
    group.steer(live=range(GROUP_SIZE), accepting=range(GROUP_SIZE - 1, -1, -1))
    yield group
    group.close()


PACKETS: dict[str, Callable[[bytes], bytes]] = {
    "Initial": initial,
    "Handshake": handshake,
    "1-RTT": short,
}


@pytest.mark.parametrize("packet", PACKETS.values(), ids=PACKETS.keys())
def test_issued_ids_reach_the_socket_of_their_slot(
    group: Group, packet: Callable[[bytes], bytes]
) -> None:
    for slot in range(GROUP_SIZE):
        for _ in range(8):
            connection_id = LAYOUT.generator(slot)()
            assert group.receiver(packet(connection_id)) == slot


def test_a_new_source_port_does_not_move_a_connection(group: Group) -> None:
    """NAT rebinding or migration: the client's port changes, its connection ID does not."""
    for slot in range(GROUP_SIZE):
        connection_id = LAYOUT.generator(slot)()
        receivers = {group.receiver(short(connection_id), client=client) for client in range(3)}
        assert receivers == {slot}


def test_random_initial_ids_spread_and_stay_put(group: Group) -> None:
    counts: Counter[int] = Counter()
    for index in range(240):
        # RFC 9000 §7.2: at least 8 bytes; clients use 8 (aioquic, Chrome) up to 20.
        destination = os.urandom(8 if index % 3 else 20)
        receivers = {group.receiver(initial(destination), client=client) for client in (0, 1, 2, 0)}
        assert len(receivers) == 1, f"the Initials of {destination.hex()} went to {receivers}"
        counts[receivers.pop()] += 1
    # 60 expected on each socket; 25 is over 4 standard deviations below.
    assert set(counts) == set(range(GROUP_SIZE))
    assert min(counts.values()) >= 25, counts


def test_a_draining_slot_keeps_its_connections_and_gets_no_new_ones() -> None:
    group = Group("127.0.0.1", GROUP_SIZE)
    try:
        group.steer(live=range(GROUP_SIZE), accepting=(1, 2, 3))
        old = LAYOUT.generator(0)()
        assert group.receiver(short(old)) == 0
        assert group.receiver(handshake(old)) == 0
        new_ones = {group.receiver(initial(os.urandom(8))) for _ in range(60)}
        assert new_ones == {1, 2, 3}
        # The old worker is gone: its IDs go where new connections go, always the same one.
        group.steer(live=(1, 2, 3), accepting=(1, 2, 3))
        receivers = {group.receiver(short(old), client=client) for client in range(3)}
        assert len(receivers) == 1
        assert receivers <= {1, 2, 3}
        assert group.receiver(short(LAYOUT.generator(2)())) == 2
    finally:
        group.close()


def test_ids_with_a_server_id_are_steered_by_their_slot() -> None:
    layout = ConnectionIDLayout(length=12, server_id=b"\x0a\x0b\x0c", config_rotation=1)
    group = Group("127.0.0.1", GROUP_SIZE)
    try:
        group.steer(live=range(GROUP_SIZE), accepting=range(GROUP_SIZE), layout=layout)
        for slot in range(GROUP_SIZE):
            connection_id = layout.generator(slot)()
            assert group.receiver(short(connection_id)) == slot
            assert group.receiver(handshake(connection_id)) == slot
        spread = {group.receiver(initial(os.urandom(8))) for _ in range(60)}
        assert spread == set(range(GROUP_SIZE))
    finally:
        group.close()


def test_what_cannot_be_read_goes_to_the_first_accepting_socket() -> None:
    group = Group("127.0.0.1", GROUP_SIZE)
    try:
        group.steer(live=range(GROUP_SIZE), accepting=(2, 3))
        for datagram in (
            b"",
            b"\x40",
            b"\x40\x01",
            b"\xc3" + VERSION_1,
            b"\xc3" + VERSION_1 + b"\x02\x01\x02" + b"\x00" * 1200,  # a 2-byte ID
        ):
            assert group.receiver(datagram) == 2, datagram
    finally:
        group.close()


def test_a_long_header_id_of_another_length_is_new() -> None:
    """A long header ID of a length we do not issue is a client's, however its bytes look."""
    group = Group("127.0.0.1", GROUP_SIZE)
    try:
        group.steer(live=range(GROUP_SIZE), accepting=(3,))
        looks_issued = LAYOUT.generator(1)() + b"\x00\x00"  # 10 bytes, slot 1's first 8
        assert group.receiver(initial(looks_issued)) == 3
        assert group.receiver(initial(looks_issued[:8])) == 1
    finally:
        group.close()


def test_the_largest_group_program_is_accepted() -> None:
    group = Group("127.0.0.1", 2)
    try:
        group.steer(live=range(256), accepting=list(range(255, -1, -1)))
        # Slots past the group's end: the kernel hashes, to one of the two.
        assert group.receiver(short(LAYOUT.generator(1)())) == 1
    finally:
        group.close()


def test_attaching_to_a_socket_outside_a_group_says_why() -> None:
    program = build_steering_program(LAYOUT, live=(0,), accepting=(0,))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(QUICSteeringUnavailable, match="SO_REUSEPORT group"):
            attach_steering_program(sock, program)


@pytest.mark.parametrize(
    ("live", "accepting", "message"),
    [((0,), (), "at least one"), ((256,), (0,), "not 256"), ((0,), (-1,), "not -1")],
)
def test_program_arguments_are_checked(
    live: tuple[int, ...], accepting: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_steering_program(LAYOUT, live=live, accepting=accepting)


def test_connection_ids_carry_slot_check_and_server_id() -> None:
    plain = make_connection_id(LAYOUT, slot=7, entropy=bytes(range(1, 7)))
    assert plain == bytes((1, 7, 7 ^ CHECK_KEY, 2, 3, 4, 5, 6))
    assert connection_id_slot(LAYOUT, plain) == 7
    layout = ConnectionIDLayout(length=10, server_id=b"\xaa\xbb", config_rotation=2)
    with_server = make_connection_id(layout, slot=3, entropy=b"vwxyz")
    # QUIC-LB: config rotation bits, then the length minus one; the server ID.
    assert with_server == bytes((2 << 5 | 9, 0xAA, 0xBB, 3, 3 ^ CHECK_KEY)) + b"vwxyz"
    assert connection_id_slot(layout, with_server) == 3
    assert connection_id_slot(layout, b"\x49\xaa\xbc" + with_server[3:]) is None
    assert connection_id_slot(LAYOUT, bytes((1, 7, 7, 2, 3, 4, 5, 6))) is None
    assert connection_id_slot(LAYOUT, plain + b"\x00") is None
    generate = LAYOUT.generator(200)
    generated = {generate() for _ in range(100)}
    assert len(generated) == 100
    assert {connection_id_slot(LAYOUT, cid) for cid in generated} == {200}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConnectionIDLayout(length=3), "4 to 20"),
        (lambda: ConnectionIDLayout(length=21), "4 to 20"),
        (lambda: ConnectionIDLayout(length=20, server_id=b"123456"), "at most 5"),
        (lambda: ConnectionIDLayout(length=8, server_id=b"12"), "fewer than 4 random"),
        (lambda: ConnectionIDLayout(length=6), "fewer than 4 random"),
        (lambda: ConnectionIDLayout(server_id=b"1", config_rotation=7), "0 to 6"),
    ],
)
def test_connection_id_layouts_are_checked(
    make: Callable[[], ConnectionIDLayout], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_make_connection_id_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="not 256"):
        make_connection_id(LAYOUT, slot=256, entropy=bytes(6))
    with pytest.raises(ValueError, match="6 bytes of entropy"):
        make_connection_id(LAYOUT, slot=0, entropy=bytes(5))
