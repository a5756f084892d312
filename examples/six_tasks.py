"""Six everyday tasks with hface's client; ``six_tasks_httpx.py`` does the same with httpx.

Run from a directory holding ``certs/`` (``hface certs certs``), against a
server with the routes used here (``tests/test_client/api_app.py``)::

    python six_tasks.py https://localhost:5443
"""

import asyncio
import sys

import anyio

from hface.client import Client, ClientTLSConfig


async def main(base: str) -> None:
    tls_config = ClientTLSConfig(cafile="certs/cacert.pem")
    async with Client(tls_config=tls_config).session() as session:
        # 1. GET JSON with query parameters and a timeout.
        response = await session.get(f"{base}/get", params={"q": "hface"}, timeout=10)
        print(response.json()["query"])
        # 2. POST JSON.
        response = await session.post(f"{base}/post", json={"name": "hface"})
        print(response.raise_for_status().json()["body"])
        # 3. Stream a download to a file.
        async with session.stream("GET", f"{base}/bytes/1000000") as response:
            async with await anyio.open_file("download.bin", "wb") as file:
                async for chunk in response.aiter_bytes():
                    await file.write(chunk)
        print((await anyio.Path("download.bin").stat()).st_size)
        # 4. 20 concurrent requests.
        urls = [f"{base}/get?n={n}" for n in range(20)]
        responses = await asyncio.gather(*(session.get(url) for url in urls))
        print([response.json()["query"]["n"][0] for response in responses])
        # 5. Follow a redirect.
        response = await session.get(f"{base}/redirect/302", follow_redirects=True)
        print(response.status, response.url)
        # 6. Basic authentication.
        response = await session.get(f"{base}/basic-auth/ann/s3cret", auth=("ann", "s3cret"))
        print(response.status, response.json())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "https://localhost:5443"))
