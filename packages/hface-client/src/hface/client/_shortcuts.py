"""``get``, ``post``, ... of :class:`ClientSession`: ``request`` with a method.

Each shortcut takes the keywords of :meth:`ClientSession.request` that
make sense for its method, typed once as :class:`RequestOptions` (every
keyword) and :class:`QueryOptions` (those of a request without a body),
and hands them on as they came: no keyword list is written twice. A
keyword a shortcut does not take (a body given to ``get()``) is a
TypeError at run time too, as with a spelled-out signature.
"""

from __future__ import annotations

import sys

from ._conveniences import QUERY_KEYWORDS, QueryOptions, RequestOptions, check_keywords
from ._models import URL, Response

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack


class RequestShortcuts:
    """The shortcut methods; :class:`ClientSession` provides :meth:`request`."""

    async def request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Response:
        """Send a request; see :meth:`ClientSession.request`."""
        raise NotImplementedError

    async def get(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("GET", url, ...)``, without a body: see :meth:`ClientSession.request`."""
        return await self._query("GET", url, options)

    async def head(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("HEAD", url, ...)``, without a body: see :meth:`ClientSession.request`."""
        return await self._query("HEAD", url, options)

    async def options(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("OPTIONS", url, ...)``, without a body: see :meth:`ClientSession.request`."""
        return await self._query("OPTIONS", url, options)

    async def delete(self, url: URL | str, **options: Unpack[QueryOptions]) -> Response:
        """``request("DELETE", url, ...)``, without a body: see :meth:`ClientSession.request`."""
        return await self._query("DELETE", url, options)

    async def post(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("POST", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("POST", url, **options)

    async def put(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PUT", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        """``request("PATCH", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request("PATCH", url, **options)

    async def _query(self, method: str, url: URL | str, options: QueryOptions) -> Response:
        check_keywords(method.lower(), options, QUERY_KEYWORDS)
        return await self.request(method, url, **options)
