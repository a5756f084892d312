"""qlog files of QUIC connections (:attr:`HTTP3Settings.qlog_dir`), for debugging.

Theory of operation: aioquic's ``QuicFileLogger`` writes a connection's
trace (``<original destination connection ID>.qlog``, JSON) when aioquic
ends the connection, at the end of its closing or draining period
(RFC 9000 §10.2). hface stops using a QUIC connection as soon as it has
terminated (the socket closes without waiting out that period), so aioquic
would never get there and the file never be written. The protocol
therefore calls :meth:`QlogFileLogger.finish` when it emits
``ConnectionTerminated``: the trace so far is written then, once. One
logger serves one connection (the factory makes one per configuration).
"""

from __future__ import annotations

from aioquic.quic.logger import QuicFileLogger, QuicLoggerTrace


class QlogFileLogger(QuicFileLogger):
    """aioquic's ``QuicFileLogger``, whose traces can be written before aioquic ends them."""

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        """Write ``trace``'s file, unless :meth:`finish` wrote it already."""
        if trace in self._traces:
            super().end_trace(trace)

    def finish(self) -> None:
        """Write the file of every trace not written yet (the connection has ended)."""
        for trace in list(self._traces):
            self.end_trace(trace)
