"""The six tasks of ``six_tasks.py``, with httpx (for comparison; ``pip install httpx``).

Run from a directory holding ``certs/`` (``hface certs certs``), against a
server with the routes used here (``tests/test_client/api_app.py``)::

    python six_tasks_httpx.py https://localhost:5443
"""

import asyncio
import ssl
import sys

import anyio
import httpx


async def main(base: str) -> None:
    context = ssl.create_default_context(cafile="certs/cacert.pem")
    async with httpx.AsyncClient(verify=context) as client:
        # 1. GET JSON with query parameters and a timeout.
        response = await client.get(f"{base}/get", params={"q": "hface"}, timeout=10)
        print(response.json()["query"])
        # 2. POST JSON.
        response = await client.post(f"{base}/post", json={"name": "hface"})
        print(response.raise_for_status().json()["body"])
        # 3. Stream a download to a file.
        async with client.stream("GET", f"{base}/bytes/1000000") as response:
            async with await anyio.open_file("download.bin", "wb") as file:
                async for chunk in response.aiter_bytes():
                    await file.write(chunk)
        print((await anyio.Path("download.bin").stat()).st_size)
        # 4. 20 concurrent requests.
        urls = [f"{base}/get?n={n}" for n in range(20)]
        responses = await asyncio.gather(*(client.get(url) for url in urls))
        print([response.json()["query"]["n"][0] for response in responses])
        # 5. Follow a redirect.
        response = await client.get(f"{base}/redirect/302", follow_redirects=True)
        print(response.status_code, response.url)
        # 6. Basic authentication.
        response = await client.get(f"{base}/basic-auth/ann/s3cret", auth=("ann", "s3cret"))
        print(response.status_code, response.json())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "https://localhost:5443"))
