"""A local Twilio-compatible server: the Messages API subset unicomm uses, for tests and demos.

It speaks create, fetch and list of ``/2010-04-01/Accounts/{sid}/Messages`` with
Twilio-shaped JSON and errors, checks HTTP basic auth (account SID and auth token),
answers 429 above a configured rate, and later calls each message's StatusCallback
(``sent`` then the outcome it was told to produce, optionally reordered and delayed)
signed with X-Twilio-Signature. Every accepted message is appended to a JSON-lines
log, which is the truth for "lost" and "duplicate".

Run: ``python -m sms.testing.twilio_server --port 8099 --log messages.jsonl``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email.utils
import fnmatch
import functools
import gc
import hashlib
import json
import random
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from sms.segments import segment

API_VERSION = "2010-04-01"
OUTCOMES = ("delivered", "undelivered", "failed")
ERROR_CODES = {"undelivered": 30003, "failed": 30008}
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


@dataclass
class ServerConfig:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "local-test-token"
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    # (fnmatch pattern on To, outcome); the first match wins.
    outcome_patterns: list[tuple[str, str]] = field(default_factory=list)
    undelivered_ratio: float = 0.0
    failed_ratio: float = 0.0
    delay_seconds: tuple[float, float] = (0.0, 0.0)
    reorder_ratio: float = 0.0  # share of messages whose final callback comes before "sent"
    rate_limit_per_second: float = 0.0  # 0: unlimited
    callback_attempts: int = 3
    seed: int = 7


class TwilioServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.messages: dict[str, dict[str, Any]] = {}
        self.validator = RequestValidator(config.auth_token)
        self.random = random.Random(config.seed)
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._log: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._window = (0, 0)
        self._callback_slots = asyncio.Semaphore(64)
        self.port = config.port

    # ---------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
        app.router.add_post(base + ".json", self.create)
        app.router.add_get(base + ".json", self.list)
        app.router.add_get(base + "/{sid}.json", self.fetch)
        return app

    async def start(self) -> TwilioServer:
        if self.config.log_path is not None:
            self._load_log(self.config.log_path)
            self._log = self.config.log_path.open("a", encoding="utf-8")
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()
        if self._log is not None:
            self._log.close()

    async def __aenter__(self) -> TwilioServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _load_log(self, path: Path) -> None:
        for record in read_log(path):
            self.messages[record["sid"]] = record

    def _append(self, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._log.flush()

    # ---------------------------------------------------------- behaviour

    def outcome_for(self, to: str) -> str:
        """Deterministic per number, so a test knows what each recipient must end as."""
        for pattern, outcome in self.config.outcome_patterns:
            if fnmatch.fnmatchcase(to, pattern):
                return outcome
        draw = int.from_bytes(hashlib.sha256(to.encode()).digest()[:8], "big") / 2**64
        if draw < self.config.failed_ratio:
            return "failed"
        if draw < self.config.failed_ratio + self.config.undelivered_ratio:
            return "undelivered"
        return "delivered"

    def _rate_limited(self) -> bool:
        limit = self.config.rate_limit_per_second
        if limit <= 0:
            return False
        second = int(time.monotonic())
        start, count = self._window
        if start != second:
            start, count = second, 0
        count += 1
        self._window = (start, count)
        return count > limit

    # ---------------------------------------------------------- HTTP

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    def _authorised(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        try:
            auth = aiohttp.BasicAuth.decode(header)
        except ValueError:
            auth = None
        if auth is None or (auth.login, auth.password) != (
            self.config.account_sid,
            self.config.auth_token,
        ):
            return self._error(401, 20003, "Authentication Error - invalid username")
        if request.match_info["account"] != self.config.account_sid:
            return self._error(404, 20404, "The requested resource was not found")
        return None

    def _public(self, record: dict[str, Any]) -> dict[str, Any]:
        sid = record["sid"]
        created = _http_date(record["date_created"])
        updated = _http_date(record["date_updated"]) if "date_updated" in record else created
        account = self.config.account_sid
        return {
            "account_sid": account,
            "api_version": API_VERSION,
            "body": record["body"],
            "date_created": created,
            "date_sent": created,
            "date_updated": updated,
            "direction": "outbound-api",
            "error_code": record.get("error_code"),
            "error_message": None,
            "from": record["from"],
            "messaging_service_sid": record.get("messaging_service_sid"),
            "num_media": "0",
            "num_segments": str(record["num_segments"]),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": record["status"],
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account}/Messages/{sid}/Media.json"
            },
            "to": record["to"],
            "uri": f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json",
        }

    async def create(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        if self._rate_limited():
            return self._error(429, 20429, "Too Many Requests")
        form = await request.post()
        to = str(form.get("To", ""))
        sender = str(form.get("From", ""))
        service = str(form.get("MessagingServiceSid", ""))
        body = str(form.get("Body", ""))
        if not _E164.match(to):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        now = dt.datetime.now(dt.UTC)
        record = {
            "event": "accepted",
            "sid": "SM" + secrets.token_hex(16),
            "to": to,
            "from": sender or "+10000000000",
            "messaging_service_sid": service or None,
            "body": body,
            "num_segments": _segments(body),
            "status_callback": str(form.get("StatusCallback", "")) or None,
            "status": "queued",
            "outcome": self.outcome_for(to),
            "date_created": now.isoformat(),
        }
        # Logged before answering: a message this server accepted is on record.
        self.messages[record["sid"]] = record
        self._append(record)
        task = asyncio.get_running_loop().create_task(self._progress(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(self._public(record), status=201)

    async def fetch(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        record = self.messages.get(request.match_info["sid"])
        if record is None:
            return self._error(404, 20404, "The requested resource was not found")
        return web.json_response(self._public(record))

    async def list(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        query = request.query
        try:
            after = _instant(query.get("DateSent>"))
            before = _instant(query.get("DateSent<"))
            page_size = min(1000, int(query.get("PageSize", "50")))
            page = int(query.get("Page", "0"))
        except ValueError:
            return self._error(400, 20001, "Invalid query parameter")
        found = [
            record
            for record in reversed(self.messages.values())
            if (not query.get("To") or record["to"] == query["To"])
            and (not query.get("From") or record["from"] == query["From"])
            and (after is None or dt.datetime.fromisoformat(record["date_created"]) >= after)
            and (before is None or dt.datetime.fromisoformat(record["date_created"]) < before)
        ]
        chunk = found[page * page_size : (page + 1) * page_size]
        base = f"/{API_VERSION}/Accounts/{self.config.account_sid}/Messages.json"
        more = (page + 1) * page_size < len(found)
        params = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}

        def page_uri(number: int) -> str:
            from urllib.parse import urlencode

            return f"{base}?{urlencode({**params, 'PageSize': page_size, 'Page': number})}"

        return web.json_response(
            {
                "messages": [self._public(record) for record in chunk],
                "end": page * page_size + max(0, len(chunk) - 1),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if more else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "page": page,
                "page_size": page_size,
                "start": page * page_size,
                "uri": page_uri(page),
            }
        )

    # ---------------------------------------------------------- callbacks

    async def _progress(self, record: dict[str, Any]) -> None:
        low, high = self.config.delay_seconds
        await asyncio.sleep(self.random.uniform(low, high) if high > 0 else 0)
        outcome = record["outcome"]
        steps = ["sent", outcome]
        if self.random.random() < self.config.reorder_ratio:
            steps.reverse()  # callbacks may arrive out of order, as Twilio warns
        # The record's own status only moves forward, like Twilio's.
        record["status"] = outcome
        record["error_code"] = ERROR_CODES.get(outcome)
        record["date_updated"] = dt.datetime.now(dt.UTC).isoformat()
        self._append({"event": "status", "sid": record["sid"], "status": outcome})
        if record.get("status_callback"):
            for status in steps:
                await self._callback(record, status)

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(self.validator.compute_signature(url, params))

    async def _callback(self, record: dict[str, Any], status: str) -> None:
        assert self._http is not None
        params = {
            "AccountSid": self.config.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": record["sid"],
            "SmsSid": record["sid"],
            "MessageStatus": status,
            "SmsStatus": status,
            "From": record["from"],
            "To": record["to"],
        }
        if status in ERROR_CODES:
            params["ErrorCode"] = str(ERROR_CODES[status])
        url = record["status_callback"]
        headers = {
            "X-Twilio-Signature": self.sign(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        # The form as aiohttp would encode it, once: a FormData per post costs more CPU
        # than the rest of the callback, and this process shares the machine with unicomm.
        body = urlencode(params).encode()
        for attempt in range(self.config.callback_attempts):
            try:
                async with (
                    self._callback_slots,
                    self._http.post(url, data=body, headers=headers) as response,
                ):
                    if response.status < 500:
                        self.callbacks_sent += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5 * 2**attempt)
        self.callbacks_failed += 1

    async def send_inbound(self, url: str, from_: str, body: str, to: str = "") -> int:
        """Deliver an inbound SMS to a webhook as Twilio would; returns the HTTP status."""
        assert self._http is not None
        params = {
            "AccountSid": self.config.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": "SM" + secrets.token_hex(16),
            "SmsSid": "",
            "From": from_,
            "To": to or "+10000000000",
            "Body": body,
            "NumMedia": "0",
        }
        params["SmsSid"] = params["MessageSid"]
        headers = {"X-Twilio-Signature": self.sign(url, params)}
        async with self._http.post(url, data=params, headers=headers) as response:
            return response.status


@functools.lru_cache(maxsize=1024)
def _segments(body: str) -> int:
    return max(1, segment(body).segments)


def _http_date(iso: str) -> str:
    """Twilio's RFC 2822 dates, from the ISO form the log keeps."""
    return email.utils.format_datetime(dt.datetime.fromisoformat(iso))


def _instant(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text if "T" in text else text + "T00:00:00+00:00")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Accepted messages, each with its latest status."""
    accepted: dict[str, dict[str, Any]] = {}
    for record in iter_log(path):
        if record.get("event") == "accepted":
            accepted[record["sid"]] = dict(record)
        elif record.get("event") == "status" and record["sid"] in accepted:
            accepted[record["sid"]]["status"] = record["status"]
            accepted[record["sid"]]["error_code"] = ERROR_CODES.get(record["status"])
    return list(accepted.values())


def _parse_args(argv: list[str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser(
        prog="python -m sms.testing.twilio_server",
        description=__doc__.splitlines()[0] if __doc__ else "",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--account-sid", default=ServerConfig.account_sid)
    parser.add_argument("--auth-token", default=ServerConfig.auth_token)
    parser.add_argument("--log", type=Path, help="JSON-lines log of accepted messages")
    parser.add_argument(
        "--outcome",
        action="append",
        default=[],
        metavar="PATTERN=STATE",
        help="e.g. '+86139*=undelivered' (fnmatch on To)",
    )
    parser.add_argument("--undelivered-ratio", type=float, default=0.0)
    parser.add_argument("--failed-ratio", type=float, default=0.0)
    parser.add_argument("--delay", default="0,0", help="callback delay range in seconds: LOW,HIGH")
    parser.add_argument("--reorder-ratio", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=0.0, help="creates per second; 0: none")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    patterns = []
    for item in args.outcome:
        pattern, _, outcome = item.rpartition("=")
        if outcome not in OUTCOMES or not pattern:
            parser.error(f"--outcome {item!r}: expected PATTERN=one of {', '.join(OUTCOMES)}")
        patterns.append((pattern, outcome))
    low, _, high = args.delay.partition(",")
    return ServerConfig(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        log_path=args.log,
        outcome_patterns=patterns,
        undelivered_ratio=args.undelivered_ratio,
        failed_ratio=args.failed_ratio,
        delay_seconds=(float(low), float(high or low)),
        reorder_ratio=args.reorder_ratio,
        rate_limit_per_second=args.rate_limit,
        seed=args.seed,
    )


async def _serve(config: ServerConfig) -> None:
    server = await TwilioServer(config).start()
    # As `unicomm serve` tunes it: a long-running server's start-up objects frozen out of
    # the collector's scans, and young objects collected every 10,000 allocations.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)
    print(f"local Twilio API on {server.url} (account {config.account_sid})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
