"""Giving back the memory a flood of connections took.

A flood of connections (silent TCP ones, or QUIC handshakes never
finished) leaves the process larger than before it, long after the
connections are gone, unless someone asks: :func:`release_memory` does,
once a flood has ended (the QUIC listener and the server call it).
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, if the C library has it.

    (``ctypes`` is imported here, at the first release: a server that no
    flood reaches does without it.)
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        function: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return function


def release_memory() -> None:
    """Free what a flood of abandoned connections left, and give the heap back to the system.

    A full collection frees the connections' reference cycles at once (not
    whenever the oldest generation is next collected). CPython returns an
    arena of small objects (1 MiB) only once it is empty, and its type
    attribute cache keeps a reference to the last name looked up in each
    slot: names built for each connection (aioquic's ``"initial_" +
    param``, say) outlive the connection there and pin, scattered, most of
    the arenas a flood filled. Clearing the cache frees them and so the
    arenas. glibc's ``malloc_trim`` then returns the free pages of its heap
    (the larger blocks: packet buffers, TLS state), which ``free`` keeps.
    """
    gc.collect()
    clear = getattr(sys, "_clear_internal_caches", None) or getattr(sys, "_clear_type_cache", None)
    if clear is not None:  # CPython's (3.13 renamed it)
        clear()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
