"""What a WebSocket session of an ``ASGIServer`` puts into wsproto to receive frames faster.

Theory of operation. wsproto (the frame library, :mod:`._asgi_websocket`)
receives a frame's payload in three copies: ``receive_data`` appends the
bytes read to a ``bytearray`` (its ``Buffer``), the frame decoder slices
what it has of the payload out of it, and a ``XorMaskerSimple`` unmasks
the slice, in Python, into another ``bytearray``, which ``bytes()``
copies once more; the session then joins the pieces of a message. A
1 MiB message read from TCP in 256 KiB pieces was copied five times on
its way to the application.

wsproto looks these classes up in its module each time it makes one (a
``Buffer`` per connection, a masker per frame), so a subclass put there is
used by every wsproto connection of the process made from then on, ours
and any other's (the ``hface`` client's included). Each is a drop-in:
wsproto's events carry the same bytes. Between the classes a piece of
payload is ``bytes`` (or a view, below) rather than a ``bytearray``, which
wsproto only reads, hands to the masker, appends to (``bytes + b""`` is
no copy) or makes ``bytes`` of:

- :func:`use_compiled_unmask` puts in :class:`_CompiledMasker`, which
  unmasks with the ``websockets`` library's C ``apply_mask`` when that is
  installed (``pip install hface-server[speedups]``): wsproto does it in
  Python, at about 1 ms per MiB, once a quarter of the server's time
  echoing 1 MiB messages.
- :func:`use_frame_buffer` puts in :class:`FrameBuffer`, which keeps the
  bytes read as they came (no copy) and hands out a payload piece by
  piece, each piece within one read: a view of it, not a copy, where the
  piece is large. The masker unmasks from the view (``apply_mask`` and
  wsproto's own masker take any buffer) while the read is still in the
  CPU's cache, and :class:`_PlainMasker`, wsproto's no-op masker for the
  unmasked frames a client receives, makes ``bytes`` of it (the one copy
  wsproto's slice made). So a 1 MiB message is copied twice, unmasked and
  joined, where it was five times. Where each read is parsed as it comes
  (as the session does), wsproto hands out the same pieces as with its
  own buffer; the few bytes a read may leave (the start of the next
  frame's header) are copied out rather than keeping the whole read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, cast

import wsproto.frame_protocol

#: The smallest piece of a payload :class:`FrameBuffer` hands out as a view of
#: the read it is in; a smaller one is copied, which costs less than a view.
_VIEW_SIZE: Final = 4096
#: The largest payload of a control frame (RFC 6455 §5.5).
_CONTROL_PAYLOAD: Final = 125
#: A read over this size that has fewer than :data:`_VIEW_SIZE` bytes left
#: is not kept for them: they are copied out.
_LARGE_READ: Final = 16 * _VIEW_SIZE


@functools.cache
def use_compiled_unmask() -> bool:
    """Have wsproto unmask frames with ``websockets.speedups.apply_mask``; True if it can.

    Looked at once, when the first WebSocket session of the process opens;
    nothing changes when the ``websockets`` library (or its C extension) is
    missing. The key is carried over from one piece of a frame to the next
    as wsproto's own masker does.
    """
    try:
        from websockets.speedups import apply_mask
    except ImportError:
        return False
    module = wsproto.frame_protocol
    if not issubclass(module.XorMaskerSimple, _CompiledMasker):
        _CompiledMasker.apply_mask = staticmethod(apply_mask)
        vars(module)["XorMaskerSimple"] = _CompiledMasker  # a class: mypy won't assign it
    return True


@functools.cache
def use_frame_buffer() -> None:
    """Have wsproto's connections made from now on receive into a :class:`FrameBuffer`.

    With :class:`_PlainMasker` for the frames not masked, which may come
    out of it as views.
    """
    module = wsproto.frame_protocol
    if not issubclass(module.XorMaskerNull, _PlainMasker):
        vars(module)["XorMaskerNull"] = _PlainMasker  # classes: mypy won't assign them
    if not issubclass(module.Buffer, FrameBuffer):
        vars(module)["Buffer"] = FrameBuffer


class _CompiledMasker(wsproto.frame_protocol.XorMaskerSimple):
    """wsproto's masker with the XOR done in C (see :func:`use_compiled_unmask`).

    It returns ``bytes``, not the ``bytearray`` wsproto's own returns:
    wsproto only appends to the payload (nothing, without an extension)
    and makes ``bytes`` of it, which for ``bytes`` is no copy; a
    ``bytearray`` would be copied twice more (a 1 MiB message, 2 MiB).
    """

    apply_mask: Callable[[bytes | bytearray, bytes], bytes]

    def __init__(self, masking_key: bytes | bytearray) -> None:
        self._key = bytes(masking_key)

    def process(self, data: bytearray) -> bytearray:
        key = self._key
        turn = len(data) & 3
        if turn:
            # The next piece of the frame goes on with the key where this one stopped.
            self._key = key[turn:] + key[:turn]
        return cast(bytearray, self.apply_mask(data, key))  # bytes: see the docstring


class _PlainMasker(wsproto.frame_protocol.XorMaskerNull):
    """wsproto's masker of frames not masked, for payloads :class:`FrameBuffer` hands out.

    ``bytes`` of a view (a copy, as wsproto's own buffer made one), the
    payload itself otherwise.
    """

    def process(self, data: bytearray) -> bytearray:
        piece: bytes | bytearray | memoryview = data  # what FrameBuffer hands out
        if type(piece) is memoryview:
            return cast(bytearray, bytes(piece))
        return data


class FrameBuffer(wsproto.frame_protocol.Buffer):
    """wsproto's receive buffer, holding the bytes read as they came (see the module docstring).

    wsproto's frame decoder reads a header with ``consume_exactly`` and
    the payload with ``consume_at_most`` (what there is of it, up to the
    given size; nothing: wait for more), takes what it read with
    ``commit`` and gives it back with ``rollback``. The bytes held are
    ``_first`` from ``_start`` on, then ``_rest``, each a read as it came;
    ``bytes_used`` (wsproto's name) counts those read since the last
    commit.
    """

    def __init__(self, initial_bytes: bytes | None = None) -> None:
        # Not the base class's __init__: its bytearray is what this replaces.
        self._first = b""
        self._start = 0  # where the held bytes start in _first
        self._rest: list[bytes] = []
        self._held = 0
        self.bytes_used = 0
        if initial_bytes:
            self.feed(initial_bytes)

    def feed(self, new_bytes: bytes) -> None:
        if not new_bytes:
            return
        if type(new_bytes) is not bytes:
            new_bytes = bytes(new_bytes)  # the caller's buffer may change: a copy is kept
        if self._held:
            self._rest.append(new_bytes)
        else:
            self._first = new_bytes
            self._start = 0
        self._held += len(new_bytes)

    def consume_at_most(self, nbytes: int) -> bytearray:
        """Up to ``nbytes`` of what is held, within one read (wsproto asks again for more).

        ``bytes`` or a ``memoryview`` in fact (see the module docstring).
        """
        start = self._start + self.bytes_used
        first = self._first
        end = start + nbytes
        if end > len(first):
            if nbytes <= _CONTROL_PAYLOAD or len(first) <= start:
                # A control frame's payload, which wsproto takes whole (it checked
                # that all of it is held), or the rest of the first read was
                # taken (not yet committed), or nothing is held.
                return self._read(min(nbytes, self._held - self.bytes_used))
            end = len(first)  # the rest of the first read (wsproto asks again for more)
        size = end - start
        self.bytes_used += size
        if size < _VIEW_SIZE:
            return cast(bytearray, first[start:end])
        if size == len(first):
            return cast(bytearray, first)  # a whole read: no copy
        return cast(bytearray, memoryview(first)[start:end])

    def consume_exactly(self, nbytes: int) -> bytearray | None:
        start = self._start + self.bytes_used
        end = start + nbytes
        first = self._first
        if end <= len(first):  # within the first read, as a header mostly is
            self.bytes_used += nbytes
            return cast(bytearray, first[start:end])
        if self._held - self.bytes_used < nbytes:
            return None
        return self._read(nbytes)

    def _read(self, size: int) -> bytearray:
        """The next ``size`` bytes held (there are as many): one piece, joined only if it must.

        ``bytes`` in fact (wsproto's own Buffer returns a ``bytearray``, which
        it only reads: see the module docstring).
        """
        start = self._start + self.bytes_used
        self.bytes_used += size
        first = self._first
        end = start + size
        if end <= len(first):
            # Within one read: a header field, a small frame, a frame read whole.
            data = first if size == len(first) else first[start:end]
            return cast(bytearray, data)
        pieces: list[bytes | memoryview] = []
        for chunk in (first, *self._rest):
            length = len(chunk)
            if start >= length:
                start -= length
                continue
            if start == 0 and size >= length:
                pieces.append(chunk)
            else:
                pieces.append(memoryview(chunk)[start : start + size])
            size -= len(pieces[-1])
            start = 0
            if not size:
                break
        return cast(bytearray, b"".join(pieces))

    def commit(self) -> None:
        used = self.bytes_used
        if not used:
            return
        self.bytes_used = 0
        self._held -= used
        start = self._start + used
        first = self._first
        left = len(first) - start
        if left >= _VIEW_SIZE or (left > 0 and len(first) <= _LARGE_READ):
            self._start = start  # more of the first read is left: the common case
            return
        rest = self._rest
        while start >= len(first) and rest:
            start -= len(first)
            first = rest.pop(0)
        left = len(first) - start
        if not left:
            first, start = b"", 0
        elif left < _VIEW_SIZE and len(first) > _LARGE_READ:
            first, start = first[start:], 0  # not the whole read for a few bytes
        self._first, self._start = first, start

    def rollback(self) -> None:
        self.bytes_used = 0

    def __len__(self) -> int:
        return self._held
