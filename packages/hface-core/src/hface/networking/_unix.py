"""Listening on a Unix socket: its file made, a stale one replaced, and removed at the end.

Theory of operation. A Unix socket lives at a path. When a server stops
without removing its file (killed, or the machine lost power), the file
stays: binding the path again fails with "address in use" although no one
listens. :func:`create_unix_listener` handles it as uvicorn (asyncio's
``create_unix_server``) and anyio do, by removing a *socket* file found at
the path, but first makes sure it is stale: if a connection to it is
accepted, another server is listening there, and that is an error, not
something to take over. Anything at the path that is not a socket (a
regular file, a directory) is never removed.

The socket file gets mode ``0o666`` (a stale file's mode is kept), as
uvicorn does, so that a reverse proxy running as another user can
connect; the directory's permissions are what restricts access.
:class:`UnixListener` removes the file when it is closed, if the file is
still the one it made (a newer server may have replaced it meanwhile).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Final

import anyio
from anyio.abc import Listener, SocketListener

from ._streams import ByteStream
from ._tcp import TCPListener

#: The mode of a new socket file: anyone may connect (the directory decides).
UNIX_SOCKET_MODE: Final = 0o666


def _check_stale(path: str) -> int | None:
    """The mode of a stale socket file at ``path`` (it may be replaced); None if there is none.

    :raises OSError: ``EADDRINUSE`` if a server listens at ``path``;
        ``EEXIST`` if something other than a socket is there.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(status.st_mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return stat.S_IMODE(status.st_mode)
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "a server is listening there already")


async def create_unix_listener(path: str) -> SocketListener:
    """Listen on the Unix socket ``path`` (see the module for a file already there).

    :raises OSError: if the path is in use by a live server, is not a
        socket, or cannot be bound.
    """
    mode = _check_stale(path)
    return await anyio.create_unix_listener(path, mode=UNIX_SOCKET_MODE if mode is None else mode)


class UnixListener(TCPListener):
    """A :class:`~hface.networking.TCPListener` that removes its socket file when closed.

    :param path: the socket's path.
    """

    def __init__(self, listener: Listener[ByteStream], *, path: str) -> None:
        super().__init__(listener)
        self._path = path
        try:
            self._inode: int | None = os.stat(path).st_ino
        except OSError:
            self._inode = None

    async def aclose(self) -> None:
        await super().aclose()
        try:
            if self._inode is not None and os.stat(self._path).st_ino == self._inode:
                os.unlink(self._path)
        except OSError:
            pass  # gone already, or not ours to remove
