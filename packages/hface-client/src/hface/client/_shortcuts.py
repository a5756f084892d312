"""``get``, ``post``, ... of :class:`ClientSession`: ``request`` with a method.

Kept apart from the session so that each shortcut's signature, spelled
out keyword by keyword (typed, as httpx's are), does not crowd the
session's own logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Any

from ._auth import AuthInput
from ._conveniences import FilesInput, ParamsInput, TimeoutInput
from ._headers import HeadersInput
from ._models import URL, Response


class RequestShortcuts:
    """The shortcut methods; :class:`ClientSession` provides :meth:`request`."""

    async def request(
        self,
        method: str,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """Send a request; see :meth:`ClientSession.request`."""
        raise NotImplementedError

    async def get(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("GET", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "GET",
            url,
            params=params,
            headers=headers,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def head(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("HEAD", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "HEAD",
            url,
            params=params,
            headers=headers,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def options(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("OPTIONS", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "OPTIONS",
            url,
            params=params,
            headers=headers,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def delete(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("DELETE", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "DELETE",
            url,
            params=params,
            headers=headers,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def post(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("POST", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "POST",
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            files=files,
            json=json,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def put(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("PUT", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "PUT",
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            files=files,
            json=json,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def patch(
        self,
        url: URL | str,
        *,
        params: ParamsInput | None = None,
        headers: HeadersInput | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | None = None,
        files: FilesInput | None = None,
        json: Any = None,
        auth: AuthInput = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutInput = None,  # httpx's per-request keyword
    ) -> Response:
        """``request("PATCH", url, ...)``: see :meth:`ClientSession.request`."""
        return await self.request(
            "PATCH",
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            files=files,
            json=json,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )
