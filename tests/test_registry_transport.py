"""The registries' HTTP transport (resolvers/http11.py) against real loopback servers.

A scripted server (asyncio, raw bytes) plays the registry's part in each edge: keep-alive reuse,
``Connection: close``, chunked and gzip answers, an idle connection the server dropped, a
server that stalls, closes mid-answer or answers garbage, a full pool, cancellation. The
registry clients' contract is that every failure is an ``httpx.HTTPError`` (their
``REGISTRY_UNAVAILABLE``) and a broken connection is never used again.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from bench.harness import free_port
from resolvers.http11 import RegistryTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A loopback server whose ``handler`` serves each accepted connection."""

    handler: Handler
    connections: int = 0
    ended: int = 0  # connections whose client side was closed (or that the handler ended)
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended += 1
            writer.close()


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    """One request (head and Content-Length body), or None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    server.requests.append(head + body)
    return body


def answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    headers = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def echo_keepalive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    while (body := await read_request(reader, server)) is not None:
        writer.write(answer(json.dumps({"echo": json.loads(body)}).encode()))
        await writer.drain()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def _serve(handler: Handler) -> Server:
        server = Server(handler)
        listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        servers.append(listening)
        return server

    yield _serve
    for s in servers:
        s.close()


def client(**options: float) -> httpx.AsyncClient:
    transport = RegistryTransport(**options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0))


async def test_keeps_one_connection_alive_across_calls(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await serve(echo_keepalive)
    async with client() as http:
        for i in range(5):
            r = await http.post(server.url + "/personen", json={"i": i})
            assert r.status_code == 200
            assert r.json() == {"echo": {"i": i}}
    assert server.connections == 1
    assert len(server.requests) == 5
    head = server.requests[0].split(b"\r\n\r\n")[0].lower()
    assert b"post /personen http/1.1" in head
    assert b"host: 127.0.0.1:" in head
    assert b"content-type: application/json" in head


async def test_concurrent_calls_each_get_a_connection_then_share_the_idle_ones(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def slow_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while (body := await read_request(r, s)) is not None:
            await asyncio.sleep(0.05)
            w.write(answer(body))
            await w.drain()

    server = await serve(slow_echo)
    async with client() as http:
        bodies = await asyncio.gather(*(http.post(server.url, json={"i": i}) for i in range(8)))
        assert [r.json() for r in bodies] == [{"i": i} for i in range(8)]
        await asyncio.gather(*(http.post(server.url, json={"i": i}) for i in range(8)))
    assert server.connections == 8  # the second round reused the first round's connections


async def test_full_pool_waits_then_times_out_as_pool_timeout(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    release = asyncio.Event()

    async def held(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while (body := await read_request(r, s)) is not None:
            await release.wait()
            w.write(answer(body))
            await w.drain()

    server = await serve(held)
    transport = RegistryTransport(max_connections=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0, pool=0.2)) as http:
        first = asyncio.create_task(http.post(server.url, json={}))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.post(server.url, json={})
        release.set()
        assert (await first).status_code == 200
        assert (await http.post(server.url, json={"again": 1})).json() == {"again": 1}
    assert server.connections == 1


async def test_connection_close_answer_is_not_reused(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def closing(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        body = await read_request(r, s)
        assert body is not None
        w.write(answer(body, "Connection: close"))
        await w.drain()

    server = await serve(closing)
    async with client() as http:
        for i in range(3):
            assert (await http.post(server.url, json={"i": i})).json() == {"i": i}
    assert server.connections == 3


async def test_chunked_and_gzip_answers_are_read_whole_and_decoded(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    payload = json.dumps({"personen": [{"vnummer": str(i)} for i in range(200)]}).encode()
    packed = gzip.compress(payload)

    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(r, s) is not None:
            head = (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                "Content-Encoding: gzip\r\nContent-Type: application/json\r\n\r\n"
            )
            w.write(head.encode())
            for i in range(0, len(packed), 100):
                piece = packed[i : i + 100]
                w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await w.drain()
                await asyncio.sleep(0)
            w.write(b"0\r\n\r\n")
            await w.drain()

    server = await serve(chunked)
    async with client() as http:
        for _ in range(2):
            r = await http.post(server.url, json={})
            assert r.json() == json.loads(payload)
    assert server.connections == 1


async def test_idle_connection_the_server_closed_is_not_reused(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def one_per_connection(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server
    ) -> None:
        body = await read_request(r, s)
        assert body is not None
        w.write(answer(body))  # keep-alive promised, then dropped without a word
        await w.drain()

    server = await serve(one_per_connection)
    async with client() as http:
        for i in range(3):
            assert (await http.post(server.url, json={"i": i})).json() == {"i": i}
    assert server.connections == 3


async def test_reused_connection_hung_up_before_any_answer_is_retried_once_on_a_new_one(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    # The keep-alive race: the server gives up on an idle connection as the next call is
    # written. Nothing of an answer arrived, so the call goes again on a fresh connection.
    async def second_dropped(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        body = await read_request(r, s)
        assert body is not None
        w.write(answer(body))
        await w.drain()
        await read_request(r, s)  # the next call on this connection: hang up unanswered

    server = await serve(second_dropped)
    async with client() as http:
        assert (await http.post(server.url, json={"i": 1})).json() == {"i": 1}
        assert (await http.post(server.url, json={"i": 2})).json() == {"i": 2}
    assert server.connections == 2
    assert len(server.requests) == 3  # the second call was sent twice, answered once

    # Without retries (the soak's load generator) the call fails as it happened.
    server = await serve(second_dropped)
    once = RegistryTransport(retry_unanswered=False)
    async with httpx.AsyncClient(transport=once, timeout=httpx.Timeout(2.0)) as http:
        assert (await http.post(server.url, json={"i": 1})).json() == {"i": 1}
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, json={"i": 2})
    assert server.connections == 1
    assert len(server.requests) == 2


async def test_server_that_reads_and_hangs_up_gives_a_transport_error_not_a_retry(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r, s)

    server = await serve(hang_up)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, json={})
    assert server.connections == 1  # a fresh connection is never retried


async def test_close_mid_answer_and_garbage_are_protocol_errors_and_never_pooled(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    replies = iter(
        [
            b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"half":',
            b"SMTP ready\r\n\r\n",
            answer(b'{"ok": true}'),
        ]
    )

    async def broken(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r, s)
        w.write(next(replies))
        await w.drain()
        if s.connections < 3:
            return  # close after the broken reply
        while await read_request(r, s) is not None:
            w.write(answer(b'{"ok": true}'))
            await w.drain()

    server = await serve(broken)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, json={})
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, json={})
        assert (await http.post(server.url, json={})).json() == {"ok": True}
        assert (await http.post(server.url, json={})).json() == {"ok": True}
    assert server.connections == 3


async def test_stalled_answer_is_a_read_timeout_and_the_connection_is_dropped(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def stall_first(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while (body := await read_request(r, s)) is not None:
            if len(s.requests) == 1:
                await asyncio.sleep(1.0)
            w.write(answer(body))
            await w.drain()

    server = await serve(stall_first)
    async with httpx.AsyncClient(
        transport=RegistryTransport(), timeout=httpx.Timeout(2.0, read=0.2)
    ) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(server.url, json={"i": 1})
        assert (await http.post(server.url, json={"i": 2})).json() == {"i": 2}
    assert server.connections == 2


async def test_cancelled_call_closes_its_connection(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while (body := await read_request(r, s)) is not None:
            await asyncio.sleep(0.5)
            w.write(answer(body))
            await w.drain()

    server = await serve(slow)
    async with client() as http:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):  # the registry clients' own deadline
                await http.post(server.url, json={"late": True})
        for _ in range(100):  # the server sees the cancelled connection closed, not left open
            if server.ended:
                break
            await asyncio.sleep(0.02)
        assert server.ended == 1
        # A late answer on the cancelled connection must not be read as the next call's.
        assert (await http.post(server.url, json={"next": True})).json() == {"next": True}
    assert server.connections == 2


async def test_refused_connection_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/", json={})


async def test_non_http_scheme_is_refused() -> None:
    transport = RegistryTransport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        RegistryTransport(max_connections=0)
