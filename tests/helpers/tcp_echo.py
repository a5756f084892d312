"""A plain TCP echo server that says its name first, for tests in network namespaces.

Usage: ``python tcp_echo.py NAME PORT``. It listens on every address of its
namespace, prints ``listening`` on a line of its own, and answers each
connection with ``NAME`` on a line, then every byte it receives (a PROXY
protocol header included), until the client closes. It imports nothing of
hface: it stands for any server behind the load balancer.
"""

from __future__ import annotations

import socket
import sys
import threading


def echo(connection: socket.socket, name: bytes) -> None:
    with connection:
        connection.sendall(name + b"\n")
        while data := connection.recv(65536):
            connection.sendall(data)


def main() -> None:
    name, port = sys.argv[1].encode(), int(sys.argv[2])
    with socket.create_server(("0.0.0.0", port), reuse_port=False) as server:
        print("listening", flush=True)
        while True:
            connection, _ = server.accept()
            threading.Thread(target=echo, args=(connection, name), daemon=True).start()


if __name__ == "__main__":
    main()
