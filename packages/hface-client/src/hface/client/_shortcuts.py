"""``get``, ``post``, ... of :class:`ClientSession`: ``request`` with a method.

Each shortcut takes the keywords of :meth:`ClientSession.request` that
make sense for its method, typed once here as :class:`RequestOptions`
(every keyword) and :class:`QueryOptions` (those of a request without a
body), and hands them on as they came: no keyword list is written twice.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable, Mapping
from typing import Any, TypedDict

from ._auth import AuthInput
from ._conveniences import FilesInput, ParamsInput, TimeoutInput
from ._headers import HeadersInput
from ._models import URL, Response

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack


class QueryOptions(TypedDict, total=False):
    """The keywords of a request without a body (``get``, ``head``, ``options``, ``delete``).

    Each is described at :meth:`ClientSession.request`.
    """

    params: ParamsInput | None
    headers: HeadersInput | None
    auth: AuthInput
    follow_redirects: bool | None
    timeout: TimeoutInput


class RequestOptions(QueryOptions, total=False):
    """Every keyword of :meth:`ClientSession.request`: :class:`QueryOptions` and a body."""

    content: bytes | AsyncIterable[bytes] | None
    data: Mapping[str, Any] | None
    files: FilesInput | None
    json: Any


class RequestShortcuts:
    """The shortcut methods; :class:`ClientSession` provides :meth:`request`."""

    async def request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Response:
        """Send a request; see :meth:`ClientSession.request`."""
        raise NotImplementedError

    async def get(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("GET", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("GET", url, **options)

    async def head(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("HEAD", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("HEAD", url, **options)

    async def options(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("OPTIONS", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("OPTIONS", url, **options)

    async def delete(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("DELETE", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("DELETE", url, **options)

    async def post(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("POST", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("POST", url, **options)

    async def put(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PUT", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PATCH", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("PATCH", url, **options)
