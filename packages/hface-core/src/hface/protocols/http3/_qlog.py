"""qlog files of QUIC connections (:attr:`HTTP3Settings.qlog_dir`), for debugging.

Theory of operation: aioquic gives a connection's events to the
configuration's ``quic_logger`` (``start_trace`` when the connection is
made, ``end_trace`` when aioquic ends it, at the end of its closing or
draining period, RFC 9000 §10.2). aioquic's ``QuicFileLogger`` writes the
file in ``end_trace``; but hface stops using a QUIC connection as soon as
it has terminated (the socket closes without waiting out that period), so
aioquic would never get there and the file never be written.
:class:`QlogFileLogger` has the same two methods and writes the same file
(``<original destination connection ID>.qlog``, JSON, aioquic's qlog
version), and the protocol calls :meth:`QlogFileLogger.finish` when it
emits ``ConnectionTerminated``: the trace so far is written then, once. One
logger serves one connection (the factory makes one per configuration).
"""

from __future__ import annotations

import json
import os

from aioquic.quic.logger import QLOG_VERSION, QuicLoggerTrace


class QlogFileLogger:
    """aioquic's ``QuicFileLogger``, whose traces can be written before aioquic ends them.

    :raises ValueError: if ``path`` is not a directory.
    """

    def __init__(self, path: str) -> None:
        if not os.path.isdir(path):
            raise ValueError(f"the qlog directory {path!r} does not exist")
        self.path = path
        self.unwritten: list[QuicLoggerTrace] = []

    def start_trace(self, is_client: bool, odcid: bytes) -> QuicLoggerTrace:
        """A new connection's trace (called by aioquic)."""
        trace = QuicLoggerTrace(is_client=is_client, odcid=odcid)
        self.unwritten.append(trace)
        return trace

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        """Write ``trace``'s file, unless :meth:`finish` wrote it already."""
        if trace not in self.unwritten:
            return
        self.unwritten.remove(trace)
        content = trace.to_dict()
        name = content["common_fields"]["ODCID"] + ".qlog"
        document = {"qlog_format": "JSON", "qlog_version": QLOG_VERSION, "traces": [content]}
        with open(os.path.join(self.path, name), "w", encoding="utf-8") as file:
            json.dump(document, file)

    def finish(self) -> None:
        """Write the file of every trace not written yet (the connection has ended)."""
        for trace in list(self.unwritten):
            self.end_trace(trace)
