"""Providers: who actually carries the SMS. Console (the embedded default) and Twilio.

A provider answers four questions: send this (``send``), did you get a message I am
unsure about (``find``, for reconciliation after a crash), what became of this one
(``fetch``, when a callback never came), and does it call back (``calls_back``).
A carrier's SMPP gateway would be a third implementation of the same protocol.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
import structlog

from core.config import Settings
from core.db import utcnow
from sms.states import DeliveryState, from_provider

log = structlog.get_logger("sms.providers")

# Twilio error codes for "slow down"/"busy": worth another try later.
TEMPORARY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Outgoing:
    recipient_id: int
    to: str
    body: str
    status_callback: str | None


@dataclass(frozen=True)
class ProviderRecord:
    sid: str
    state: DeliveryState
    error: str = ""


class TemporaryProviderError(Exception):
    """The provider refused for now (rate limit, queue full): nothing was sent, retry later."""


class PermanentProviderError(Exception):
    """The provider refused for good (invalid number, blocked): never retry."""


class InDoubtError(Exception):
    """The request may or may not have reached the provider: reconcile, never resend blindly."""


class Provider(Protocol):
    name: str
    calls_back: bool

    async def send(self, message: Outgoing) -> ProviderRecord: ...

    async def find(self, to: str, body: str, since: dt.datetime) -> ProviderRecord | None: ...

    async def fetch(self, sid: str) -> ProviderRecord | None: ...

    async def close(self) -> None: ...


class ConsoleProvider:
    """Writes each message as a JSON line under ``data_dir`` and reports it delivered.

    The embedded default: a newcomer sees what would have been texted, and the log
    is also this provider's record for reconciliation.
    """

    name = "console"
    calls_back = False

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()

    async def send(self, message: Outgoing) -> ProviderRecord:
        sid = f"CN{uuid.uuid4().hex}"
        line = json.dumps(
            {
                "sid": sid,
                "at": utcnow().isoformat(),
                "to": message.to,
                "body": message.body,
                "recipient_id": message.recipient_id,
            },
            ensure_ascii=False,
        )
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        return ProviderRecord(sid, DeliveryState.DELIVERED)

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash was never acknowledged to anyone
        return records

    async def find(self, to: str, body: str, since: dt.datetime) -> ProviderRecord | None:
        for record in reversed(await asyncio.to_thread(self._records)):
            if (
                record["to"] == to
                and record["body"] == body
                and (dt.datetime.fromisoformat(record["at"]) >= since)
            ):
                return ProviderRecord(record["sid"], DeliveryState.DELIVERED)
        return None

    async def fetch(self, sid: str) -> ProviderRecord | None:
        return ProviderRecord(sid, DeliveryState.DELIVERED)

    async def close(self) -> None:
        return None


@functools.lru_cache(maxsize=4)
def _basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(login, password)}


def _twilio_http_client(api_base: str, timeout: float) -> Any:
    """The library's async client, pointed at ``api_base`` when one is configured.

    Each Twilio product has its own host (``Domain.base_url``); a custom http_client is
    the library's extension point, so requests are re-based here, once, for all of them.
    """
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    base = urlsplit(api_base) if api_base else None

    class RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(pool_connections=False)
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout),
                connector=aiohttp.TCPConnector(limit=256),
            )

        async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if base is not None:
                parts = urlsplit(url)
                path = base.path.rstrip("/") + parts.path
                url = f"{base.scheme}://{base.netloc}{path}" + (
                    f"?{parts.query}" if parts.query else ""
                )
            if kwargs.get("timeout") is None:
                # The library passes timeout=None, which aiohttp reads as "no limit at all"
                # rather than the session's: a stalled request would hold its slot forever.
                kwargs["timeout"] = timeout
            headers = dict(kwargs.get("headers") or {})
            auth = kwargs.get("auth")
            if auth is not None:
                # The same Basic credentials as a header, encoded once: the library would
                # build a (deprecated) aiohttp BasicAuth for every request.
                headers.update(_basic(*auth))
                kwargs["auth"] = None
            data = kwargs.get("data")
            if isinstance(data, dict) and data:
                # The same form aiohttp's FormData would send (urlencode, doseq), without
                # building a FormData per request.
                kwargs["data"] = urlencode(data, doseq=True).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            kwargs["headers"] = headers
            return await super().request(method, url, *args, **kwargs)

    return RebasedHttpClient()


class TwilioProvider:
    """The Messages API through the official library's async client."""

    name = "twilio"
    calls_back = True

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        api_base: str = "",
        timeout: float = 10.0,
    ) -> None:
        from twilio.rest import Client

        self.sender = sender
        # The library logs every request and response at INFO: far too much at 1,000/s.
        for name in ("twilio.http_client", "twilio.async_http_client"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.http_client = _twilio_http_client(api_base, timeout)
        # environment={} keeps TWILIO_EDGE/TWILIO_REGION from rewriting host names.
        self.client = Client(account_sid, auth_token, http_client=self.http_client, environment={})

    def _sender_args(self) -> dict[str, str]:
        # A Messaging Service SID picks the number itself; otherwise a From number.
        if self.sender.startswith("MG"):
            return {"messaging_service_sid": self.sender}
        return {"from_": self.sender}

    async def send(self, message: Outgoing) -> ProviderRecord:
        """Create the message with the library, classifying every failure."""
        from twilio.base.exceptions import TwilioRestException

        kwargs: dict[str, Any] = {"to": message.to, "body": message.body, **self._sender_args()}
        if message.status_callback:
            kwargs["status_callback"] = message.status_callback
        try:
            created = await self.client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            detail = f"{exc.status} {exc.code or ''} {exc.msg}".strip()
            if exc.status in TEMPORARY_STATUSES:
                raise TemporaryProviderError(detail) from None
            if exc.status >= 500:
                raise InDoubtError(detail) from None
            raise PermanentProviderError(detail) from None
        except aiohttp.ClientConnectorError as exc:
            # The connection never opened, so the request cannot have arrived.
            raise TemporaryProviderError(f"cannot connect: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InDoubtError(f"{type(exc).__name__}: {exc}") from None
        if not created.sid:
            # Accepted or not, the answer does not say: reconcile, never resend blindly.
            raise InDoubtError("answer without a message SID")
        return ProviderRecord(
            str(created.sid), from_provider(str(created.status)) or DeliveryState.SENT
        )

    async def find(self, to: str, body: str, since: dt.datetime) -> ProviderRecord | None:
        try:
            found = await self.client.messages.list_async(
                to=to, date_sent_after=since - dt.timedelta(minutes=5), limit=200
            )
        except Exception as exc:
            # Without the provider's answer the row stays in doubt and is asked again.
            raise InDoubtError(f"cannot list messages: {exc}") from None
        for message in found:
            created = message.date_created
            if message.body == body and (
                created is None or created >= since - dt.timedelta(seconds=5)
            ):
                state = from_provider(str(message.status)) or DeliveryState.SENT
                return ProviderRecord(str(message.sid), state, str(message.error_code or ""))
        return None

    async def fetch(self, sid: str) -> ProviderRecord | None:
        from twilio.base.exceptions import TwilioRestException

        try:
            message = await self.client.messages(sid).fetch_async()
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise InDoubtError(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InDoubtError(str(exc)) from None
        state = from_provider(str(message.status)) or DeliveryState.SENT
        return ProviderRecord(str(message.sid), state, str(message.error_code or ""))

    async def close(self) -> None:
        await self.http_client.close()


def make_provider(settings: Settings) -> Provider:
    if settings.sms_provider == "twilio":
        missing = [
            key
            for key in ("twilio_account_sid", "twilio_auth_token", "twilio_from")
            if not getattr(settings, key)
        ]
        if missing:
            raise ValueError(f"sms_provider is twilio but {', '.join(missing)} is empty")
        return TwilioProvider(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_from,
            settings.twilio_api_base,
            timeout=min(10.0, settings.sms_in_doubt_seconds / 2),
        )
    return ConsoleProvider(settings.path("sms-console.log"))


def public_base_url(settings: Settings) -> str:
    """Where the provider reaches this server: ``public_url``, else this node's HTTP port."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}"
