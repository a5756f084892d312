import asyncio

from anyio import EndOfStream

from hface.client import ProxyClient


async def main() -> None:
    proxy_client = ProxyClient("https://localhost:6443")
    proxy_client.tls_config.cafile = "certs/cacert.pem"
    async with proxy_client.session() as session:
        stream = await session.connect_tcp_tls(("localhost", 5443))
        await stream.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while True:
            try:
                chunk = await stream.receive()
            except EndOfStream:
                break
            print(chunk.decode(), end="")


if __name__ == "__main__":
    asyncio.run(main())
