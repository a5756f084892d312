"""One ``HTTPConnection`` API for HTTP/1.1, HTTP/2 and HTTP/3 (in progress)."""

__all__ = ()
