"""Networking on anyio: TCP, TLS and UDP/QUIC for servers and clients (in progress)."""

__all__ = ()
