"""A small scripted SIP user agent built on voip.sip, for signalling tests.

It speaks UDP, TCP or WebSocket, sends what the test builds, and hands back what
arrives; it answers digest challenges with the library's client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import aiohttp

from voip.sip.digest import build_credentials, parse_challenge
from voip.sip.headers import Headers
from voip.sip.ids import new_branch, new_call_id, new_tag
from voip.sip.message import Request, Response
from voip.sip.parser import StreamParser, parse_message
from voip.sip.uri import parse_uri

REALM = "unicomm"


class SipClient:
    def __init__(self, transport: str = "UDP") -> None:
        self.transport = transport
        self.inbox: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.raw: asyncio.Queue[bytes] = asyncio.Queue()
        self.host = "127.0.0.1"
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._server: tuple[str, int] = ("127.0.0.1", 0)
        self.cseq = 0

    @classmethod
    async def connect(
        cls, server_port: int, transport: str = "UDP", *, local_host: str = "127.0.0.1"
    ) -> SipClient:
        """``local_host`` may be another loopback address (127.0.0.2) to be another source."""
        client = cls(transport)
        client.host = local_host
        client._server = ("127.0.0.1", server_port)
        loop = asyncio.get_running_loop()
        if transport == "UDP":
            outer = client

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    outer._feed_datagram(data)

            udp, _ = await loop.create_datagram_endpoint(
                # Not connected: a phone accepts requests from any node of a cluster.
                Proto,
                local_addr=(local_host, 0),
            )
            client._udp = udp
            client.port = udp.get_extra_info("sockname")[1]
        elif transport == "TCP":
            reader, writer = await asyncio.open_connection(
                *client._server, local_addr=(local_host, 0)
            )
            client._stream = writer
            client.port = writer.get_extra_info("sockname")[1]
            client._reader_task = loop.create_task(client._read_stream(reader))
        else:
            client._session = aiohttp.ClientSession()
            client._ws = await client._session.ws_connect(
                f"http://127.0.0.1:{server_port}/sip", protocols=("sip",)
            )
            client.host = f"{secrets.token_hex(4)}.invalid"
            client.port = 9
            client._reader_task = loop.create_task(client._read_ws())
        return client

    def _feed_datagram(self, data: bytes) -> None:
        self.raw.put_nowait(data)
        with contextlib.suppress(ValueError):
            self.inbox.put_nowait(parse_message(data))

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        parser = StreamParser()
        while data := await reader.read(65536):
            self.raw.put_nowait(data)
            for event in parser.feed(data):
                if isinstance(event, Request | Response):
                    self.inbox.put_nowait(event)

    async def _read_ws(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self._feed_datagram(message.data.encode())

    def send_raw(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self._server)
        elif self._stream is not None:
            self._stream.write(data)
        elif self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.send_str(data.decode()))

    def send(self, message: Request | Response) -> None:
        self.send_raw(bytes(message))

    async def receive(self, timeout: float = 5.0) -> Request | Response:  # noqa: ASYNC109
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def final(self, timeout: float = 5.0) -> Response:  # noqa: ASYNC109
        """The next final response, skipping provisional ones (and answering nothing)."""
        while True:
            message = await self.receive(timeout)
            if isinstance(message, Response) and message.status >= 200:
                return message

    @property
    def contact(self) -> str:
        suffix = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"sip:{{user}}@{self.host}:{self.port}{suffix}"

    def request(
        self,
        method: str,
        uri: str,
        *,
        user: str,
        to: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        cseq: int | None = None,
    ) -> Request:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        h = Headers()
        h.add(
            "Via", f"SIP/2.0/{self.transport} {self.host}:{self.port};branch={new_branch()};rport"
        )
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{user}@{REALM}>;tag={from_tag or new_tag()}")
        h.add("To", f"<sip:{to or user}@{REALM}>")
        h.add("Call-ID", call_id or new_call_id())
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", f"<{self.contact.format(user=user)}>")
        for name, value in headers or []:
            h.add(name, value)
        if body:
            h.add("Content-Type", "application/sdp")
        return Request(method, parse_uri(uri), h, body)

    def authorize(self, request: Request, challenge: Response, password: str) -> Request:
        """The same request again (next CSeq, new branch) with credentials for the challenge."""
        proxy = challenge.status == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        value = challenge.headers.get_all(header)
        md5 = [v for v in value if "MD5" in v.upper()] or value
        parsed = parse_challenge(md5[0])
        user = request.from_.uri.user  # type: ignore[union-attr]
        credentials = build_credentials(
            parsed,
            username=user or "",
            password=password,
            method=request.method,
            uri=str(request.uri),
        )
        retry = Request(request.method, request.uri, request.headers.copy(), request.body)
        self.cseq += 1
        retry.headers.set("CSeq", f"{self.cseq} {request.method}")
        retry.headers.set(
            "Via", f"SIP/2.0/{self.transport} {self.host}:{self.port};branch={new_branch()};rport"
        )
        retry.headers.add("Proxy-Authorization" if proxy else "Authorization", str(credentials))
        return retry

    async def register(
        self, user: str, password: str, *, expires: int = 300, server: str = "127.0.0.1"
    ) -> Response:
        request = self.request(
            "REGISTER", f"sip:{server}", user=user, headers=[("Expires", str(expires))]
        )
        self.send(request)
        response = await self.final()
        if response.status == 401:
            self.send(self.authorize(request, response, password))
            response = await self.final()
        return response

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._stream is not None:
            self._stream.close()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
