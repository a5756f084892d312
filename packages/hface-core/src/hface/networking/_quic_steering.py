"""Steering QUIC datagrams to the socket that owns their connection, in the kernel (Linux).

Theory of operation
===================

Several worker processes serve one UDP port: each has its own socket, and
the sockets form a ``SO_REUSEPORT`` group. By default the kernel picks a
group member by a hash of the datagram's addresses and ports, which
breaks QUIC: a client whose NAT rebinds, or that migrates, keeps its
connection ID but changes the hash, and its datagrams reach a worker that
does not know the connection (hypercorn's issue 114).

A classic BPF program attached to the group (``SO_ATTACH_REUSEPORT_CBPF``,
Linux 4.5) chooses instead: the kernel runs it on every datagram, with
the UDP payload as its packet, and delivers the datagram to the group
member whose index it returns (the order in which the sockets were bound;
an index past the end lets the kernel hash as before).
:func:`build_steering_program` writes the program for a
:class:`~hface.networking._connection_ids.ConnectionIDLayout`; it reads
the destination connection ID (RFC 9000 §17) of

- a **long header** (first bit set): after the first byte, the 4-byte
  version and the ID's length byte, at offset 6;
- a **short header**: at offset 1, of the length the server issues (only
  the server knows it: RFC 9000 §17.3).

From the ID it takes the slot and check bytes (a 16-bit load: ``slot <<
8 | check``). Then:

1. **Issued by us**: the check byte matches (and a long header's ID has
   the length we issue) and the slot is *live* (a socket whose worker
   still has connections): that socket.
2. **Anything else** (the random ID of a client's first Initial and its
   0-RTT packets, an ID of a slot no longer live): one of the *accepting*
   sockets, ``accepting[(slot << 8 | check) % len(accepting)]``. The same
   ID always gives the same socket, so every Initial of one handshake
   lands on one worker, whatever port it comes from; random IDs spread
   evenly. The server answers from that socket with IDs of its slot, and
   the client's next packets follow them (case 1).
3. **Too short** to hold the bytes (garbage, a long header whose ID is too
   short to be ours or a valid Initial's): ``accepting[0]``.

*Live* and *accepting* differ while a worker is replaced: the old worker
stays live (its connections finish) but no longer accepts new ones.
Whoever changes them attaches a new program to any socket of the group:
the kernel swaps it atomically. Sockets must stay in the group in their
order: closing one renumbers the others, so the group's owner keeps them
all open (the supervisor does).

:func:`attach_steering_program` raises :exc:`QUICSteeringUnavailable`,
saying why, where this cannot work (not Linux, a kernel too old, no
permission); :func:`steering_unavailable_reason` asks once, on a socket of
its own, so that a server can say so at start-up and fall back.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys
from collections.abc import Collection, Sequence
from typing import Final

from ._connection_ids import CHECK_KEY, MAX_SLOTS, ConnectionIDLayout

#: ``<asm-generic/socket.h>``: attach a classic BPF program to a SO_REUSEPORT group.
SO_ATTACH_REUSEPORT_CBPF: Final = 51

# Classic BPF opcodes (<linux/filter.h>, <linux/bpf_common.h>).
_LD_LEN: Final = 0x80  # A = packet length
_LDB_ABS: Final = 0x30  # A = packet[k]
_LDH_ABS: Final = 0x28  # A = packet[k] << 8 | packet[k + 1]
_LD_MEM: Final = 0x60  # A = M[k]
_ST: Final = 0x02  # M[k] = A
_RSH: Final = 0x74  # A >>= k
_XOR: Final = 0xA4  # A ^= k
_AND: Final = 0x54  # A &= k
_MOD: Final = 0x94  # A %= k
_TAX: Final = 0x07  # X = A
_JA: Final = 0x05  # jump k forward
_JEQ: Final = 0x15  # A == k ?
_JEQ_X: Final = 0x1D  # A == X ?
_JGE: Final = 0x35  # A >= k ?
_JSET: Final = 0x45  # A & k ?
_RET: Final = 0x06  # return k

#: Long header: first byte, version (4 bytes), then the destination ID's length.
_LONG_DCID_LENGTH_OFFSET: Final = 5
_LONG_DCID_OFFSET: Final = 6
_SHORT_DCID_OFFSET: Final = 1

#: The kernel's limit on a classic BPF program (BPF_MAXINSNS).
_MAX_INSTRUCTIONS: Final = 4096


class QUICSteeringUnavailable(OSError):
    """The steering program cannot be attached here; the message says why."""


# An instruction as written: opcode, jump-if-true and jump-if-false targets
# (labels, or offsets; None for the next instruction), and k (a value, or a
# label for _JA).
_Instruction = tuple[int, "str | int | None", "str | int | None", "int | str"]


def build_steering_program(
    layout: ConnectionIDLayout, *, live: Collection[int], accepting: Sequence[int]
) -> bytes:
    """The classic BPF program for a group whose sockets issue IDs of ``layout``.

    :param live: the slots (group indices) whose issued IDs are routed to them.
    :param accepting: the slots that take new connections, at least one.
    :returns: the program, as the array of ``struct sock_filter`` the kernel takes.
    :raises ValueError: if ``accepting`` is empty or a slot is out of range.
    """
    if not accepting:
        raise ValueError("at least one slot must accept new connections")
    for slot in (*live, *accepting):
        if not 0 <= slot < MAX_SLOTS:
            raise ValueError(f"a slot is 0 to {MAX_SLOTS - 1}, not {slot}")
    offset = layout.slot_offset
    code: list[tuple[str | None, _Instruction]] = [
        # A load past the end would end the program with 0: lengths first.
        (None, (_LD_LEN, None, None, 0)),
        (None, (_JGE, None, "to_default", _SHORT_DCID_OFFSET + offset + 2)),
        (None, (_LDB_ABS, None, None, 0)),
        (None, (_JSET, None, "short", 0x80)),
        # Long header: the ID must hold the two bytes; ours has our length.
        (None, (_LD_LEN, None, None, 0)),
        (None, (_JGE, None, "to_default", _LONG_DCID_OFFSET + offset + 2)),
        (None, (_LDB_ABS, None, None, _LONG_DCID_LENGTH_OFFSET)),
        (None, (_JGE, None, "to_default", offset + 2)),
        (None, (_LDH_ABS, None, None, _LONG_DCID_OFFSET + offset)),
        (None, (_ST, None, None, 0)),
        (None, (_LDB_ABS, None, None, _LONG_DCID_LENGTH_OFFSET)),
        (None, (_JEQ, None, "long_foreign", layout.length)),
        (None, (_JA, None, None, "check")),
        ("long_foreign", (_JA, None, None, "new")),
        # Short header: the ID has the length we issue.
        ("short", (_LDH_ABS, None, None, _SHORT_DCID_OFFSET + offset)),
        (None, (_ST, None, None, 0)),
        (None, (_JA, None, None, "check")),
        # The kernel's check of scratch memory reads (check_load_and_stores)
        # follows a return into the next instruction as if it ran on: a jump
        # here keeps that path from reaching the load below.
        ("to_default", (_JA, None, None, "default")),
        # Issued by us if check == slot ^ key.
        ("check", (_LD_MEM, None, None, 0)),
        (None, (_RSH, None, None, 8)),
        (None, (_XOR, None, None, CHECK_KEY)),
        (None, (_TAX, None, None, 0)),
        (None, (_LD_MEM, None, None, 0)),
        (None, (_AND, None, None, 0xFF)),
        (None, (_JEQ_X, "issued", None, 0)),
        (None, (_JA, None, None, "new")),
        ("issued", (_LD_MEM, None, None, 0)),
        (None, (_RSH, None, None, 8)),
    ]
    # A is the slot byte: each live slot is compared in turn (a failed
    # comparison leaves A as it was).
    for slot in sorted(set(live)):
        code.append((None, (_JEQ, 0, 1, slot)))
        code.append((None, (_RET, None, None, slot)))
    # Not issued, or its slot is gone: spread by the two bytes.
    code.append(("new", (_LD_MEM, None, None, 0)))
    code.append((None, (_MOD, None, None, len(accepting))))
    for index, slot in enumerate(accepting[:-1]):
        code.append((None, (_JEQ, 0, 1, index)))
        code.append((None, (_RET, None, None, slot)))
    code.append((None, (_RET, None, None, accepting[-1])))
    code.append(("default", (_RET, None, None, accepting[0])))
    return _assemble(code)


def _assemble(code: list[tuple[str | None, _Instruction]]) -> bytes:
    """Resolve the labels into forward offsets and pack ``struct sock_filter``s."""
    if len(code) > _MAX_INSTRUCTIONS:
        raise ValueError(f"a program of {len(code)} instructions is too long")
    labels = {label: index for index, (label, _) in enumerate(code) if label is not None}

    def offset(index: int, target: str | int | None, limit: int) -> int:
        if target is None:
            return 0
        if isinstance(target, int):
            return target
        distance = labels[target] - index - 1
        if not 0 <= distance <= limit:
            raise ValueError(f"jump to {target} out of reach")  # a bug here, never input
        return distance

    packed = []
    for index, (_, (opcode, if_true, if_false, k)) in enumerate(code):
        value = offset(index, k, 0xFFFFFFFF) if isinstance(k, str) else k
        jt, jf = offset(index, if_true, 0xFF), offset(index, if_false, 0xFF)
        packed.append(struct.pack("=HBBI", opcode, jt, jf, value))
    return b"".join(packed)


def attach_steering_program(sock: socket.socket, program: bytes) -> None:
    """Attach ``program`` to the ``SO_REUSEPORT`` group of ``sock``, replacing any other.

    :raises QUICSteeringUnavailable: if the system cannot, with the reason.
    """
    if not sys.platform.startswith("linux"):
        raise QUICSteeringUnavailable(f"SO_ATTACH_REUSEPORT_CBPF needs Linux, not {sys.platform}")
    count = len(program) // 8
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", count, ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        raise QUICSteeringUnavailable(_reason(exc)) from exc


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOPROTOOPT:
        return "the kernel has no SO_ATTACH_REUSEPORT_CBPF (Linux 4.5 or later needed)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return f"attaching a BPF program is not permitted here ({exc.strerror})"
    if exc.errno == errno.EINVAL:
        return "the kernel refused the program or the socket is not in a SO_REUSEPORT group"
    return f"SO_ATTACH_REUSEPORT_CBPF failed: {exc.strerror or exc}"


def steering_unavailable_reason(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """Why QUIC datagrams cannot be steered on this system; None if they can.

    Tries on a UDP socket of its own, bound to a free loopback port.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        return "this system has no SO_REUSEPORT"
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    program = build_steering_program(ConnectionIDLayout(), live=(0,), accepting=(0,))
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((host, 0))
            attach_steering_program(probe, program)
    except QUICSteeringUnavailable as exc:
        return str(exc)
    except OSError as exc:
        return f"no UDP socket with SO_REUSEPORT on {host}: {exc.strerror or exc}"
    return None
