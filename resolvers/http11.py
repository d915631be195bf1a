"""The registries' HTTP transport: HTTP/1.1 keep-alive connections, a bounded pool, h11 framing.

Mounted as the default transport of the one ``httpx.AsyncClient`` the registry clients share
(:mod:`resolvers.base`); tests and the embedded mode mount their own instead.

Why not httpx's default transport: its connection pool re-examines every connection twice per
call (is it idle, has it expired — asking each socket's peer name through anyio), and a list of
idle connections is counted once per connection, so the bookkeeping grows with the square of
the pool's size. Under the soak's mix that was over a third of the gateway's CPU, and it grew as
the gateway slowed down (more requests in flight, more connections). Here a call takes the most
recently used idle connection of its origin (a stack), or opens one; that is all the pool does.

Contract (what :class:`RegistryTransport` promises the registry clients):

* at most ``max_connections`` calls in flight at once, across origins, each on a connection of
  its own; a call that finds no slot free waits at most the request's ``pool`` timeout
  (:class:`httpx.PoolTimeout`);
* ``connect`` and ``read`` timeouts of the request apply to connecting and to each wait for
  data; the registry clients' own deadline cancels everything else;
* every failure is an :class:`httpx.TransportError` subclass (connect, write, read, protocol)
  or a timeout; a connection that failed, was cancelled mid-call or answered anything but a
  complete, reusable HTTP/1.1 message is closed, never pooled again;
* an idle connection is reused only if it is younger than ``keepalive_expiry``, still open,
  and nothing arrived on it while idle; at most ``max_idle`` idle connections are kept;
* a reused connection that the server closed before answering a single byte (it timed out
  its keep-alive as we wrote) is retried once on a new connection (``retry_unanswered``; the
  registry calls are reads, so a request the server did read and dropped may go twice);
* the whole response body is read before the response is returned (registry answers are
  read whole by their clients anyway), and the body is passed on undecoded, so httpx applies
  ``Content-Encoding`` as with its own transports;
* TLS for ``https`` with the same default context httpx would build (system trust store,
  hostname checks); no proxies (the registries are reached directly).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import h11
import httpx

#: Bytes of headers one response may carry before it is refused (h11's own default).
MAX_HEADER_BYTES = 64 * 1024

_Origin = tuple[bytes, str, int]


class _Lost(Exception):
    """The server closed the connection before sending any byte of its answer."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: asyncio hands bytes in, h11 frames them."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: Exception | None = None
        self.received = 0  # bytes received in the current cycle
        self.requests = 0  # requests sent on this connection (0: fresh)
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._can_write: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.h11.receive_data(data)
        self._wake()

    def eof_received(self) -> bool | None:
        self._end_of_input()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self._end_of_input()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        if self._can_write is None or self._can_write.done():
            self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    # ---- use -------------------------------------------------------------------------------

    def _end_of_input(self) -> None:
        if not self.closed:
            self.closed = True
            # h11 accepts the end of input once; later data (none can come) would be refused.
            if not self.h11.trailing_data[1]:
                self.h11.receive_data(b"")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def reusable(self, now: float, expiry: float) -> bool:
        """Idle, open, young enough, and nothing arrived while it was idle."""
        data, closed = self.h11.trailing_data
        return (
            not self.closed
            and not closed
            and not data
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < expiry
        )

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Lost
        self.transport.write(data)
        if self._can_write is not None and not self._can_write.done():
            await self._can_write
            if self.closed:
                raise httpx.WriteError("The registry closed the connection while we wrote.")

    async def next_event(self, chunk_wait: float | None) -> object:
        """The next h11 event of the answer, waiting at most ``chunk_wait`` s for each chunk."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(chunk_wait):
                    await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Answer:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class RegistryTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to the registries over a small keep-alive pool (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        max_idle: int = 32,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        retry_unanswered: bool = True,
    ) -> None:
        if max_connections < 1 or max_idle < 0 or keepalive_expiry < 0:
            raise ValueError("max_connections >= 1, max_idle >= 0 and keepalive_expiry >= 0")
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._retry = retry_unanswered
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"Unsupported scheme {scheme.decode()!r}.")
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = h11.Request(
            method=request.method, target=url.raw_path, headers=list(request.headers.raw)
        )
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("No registry connection became free in time.") from None
        try:
            answer = await self._exchange(origin, head, body, timeouts, retry=self._retry)
        finally:
            self._slots.release()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def _exchange(
        self,
        origin: _Origin,
        head: h11.Request,
        body: bytes,
        timeouts: dict[str, float | None],
        *,
        retry: bool,
    ) -> _Answer:
        conn = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"))
        reused = conn.requests > 0
        conn.requests += 1
        conn.received = 0
        try:
            answer = await self._round_trip(conn, head, body, timeouts.get("read"))
        except _Lost:
            conn.close()
            if reused and retry:  # the server dropped an idle connection as we wrote
                return await self._exchange(origin, head, body, timeouts, retry=False)
            raise httpx.RemoteProtocolError(
                "The registry closed the connection without answering."
            ) from None
        except BaseException:
            conn.close()  # failed or cancelled mid-call: never pooled again
            raise
        self._put_idle(conn)
        return answer

    async def _round_trip(
        self, conn: _Connection, head: h11.Request, body: bytes, read_timeout: float | None
    ) -> _Answer:
        try:
            out = conn.h11.send(head) or b""
            if body:
                out += conn.h11.send(h11.Data(data=body)) or b""
            out += conn.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        await conn.write(out)  # one write: head and body in one segment
        status, reason, headers = 0, b"", []
        chunks: list[bytes] = []
        try:
            while True:
                event = await conn.next_event(read_timeout)
                if isinstance(event, h11.Response):
                    status, reason = event.status_code, event.reason
                    headers = list(event.headers.raw_items())
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Lost if conn.received == 0 else self._broken(conn)
                # h11.InformationalResponse (1xx): wait for the final answer
        except TimeoutError:
            raise httpx.ReadTimeout("The registry did not answer in time.") from None
        except h11.RemoteProtocolError as exc:
            if conn.received == 0:
                raise _Lost from None
            raise httpx.RemoteProtocolError(str(exc)) from None
        return _Answer(status, reason, headers, b"".join(chunks))

    @staticmethod
    def _broken(conn: _Connection) -> httpx.TransportError:
        if conn.error is not None:
            return httpx.ReadError(f"Registry connection failed: {type(conn.error).__name__}")
        return httpx.RemoteProtocolError("The registry closed the connection mid-answer.")

    async def _connect(self, origin: _Origin, limit: float | None) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == b"https":
            tls = self._ssl = self._ssl or httpx.create_ssl_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(
                f"Cannot connect to {host}:{port}: {type(exc).__name__}"
            ) from None
        return conn

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            self._idle_count -= 1
            if conn.reusable(now, self._expiry):
                return conn
            conn.close()
        return None

    def _put_idle(self, conn: _Connection) -> None:
        if (
            self._closed
            or self._idle_count >= self._max_idle
            or conn.h11.our_state is not h11.DONE
            or conn.h11.their_state is not h11.DONE
        ):
            conn.close()  # e.g. "Connection: close", or the pool is full
            return
        conn.h11.start_next_cycle()
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._idle_count += 1

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
