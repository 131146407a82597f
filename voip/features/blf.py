"""Busy lamps: SUBSCRIBE to an extension's dialog events (RFC 4235), NOTIFY on each change.

The state comes from the call core's watcher hook (ringing, answered, ended) on this
node; each subscriber gets the full state at once and again whenever the watched
extension's calls change. Any authenticated extension may watch any other (a desk's
lamp field); subscriptions live in memory (a refresh after a restart gets 481, and the
phone subscribes afresh).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog

from voip.sip.dialog import Dialog
from voip.sip.dialog_info import CONTENT_TYPE, EVENT, DialogState, dialog_info
from voip.sip.errors import SipParseError
from voip.sip.ids import new_tag
from voip.sip.message import Request
from voip.sip.transaction import ServerTransaction
from voip.sip.uri import NameAddr, SipUri, parse_uri

from ..accounts import Accounts
from ..authn import Authenticator, Challenge
from ..b2bua import Call
from ..endpoint import SipEndpoint
from ..transport.base import Flow
from .mwi import DEFAULT_EXPIRES, MIN_EXPIRES

log = structlog.get_logger("voip.blf")

STATE_OF = {"ringing": "early", "answered": "confirmed"}


@dataclass
class _Watch:
    dialog: Dialog
    number: str
    flow: Flow
    contact: str
    version: int = 0


class BusyLamps:
    def __init__(
        self,
        endpoint: SipEndpoint,
        authenticator: Authenticator,
        accounts: Accounts,
        *,
        realm: str,
    ) -> None:
        self.endpoint = endpoint
        self.authenticator = authenticator
        self.accounts = accounts
        self.realm = realm
        self._calls: dict[str, dict[str, DialogState]] = {}  # number -> call id -> state
        self._watches: dict[tuple[str, str], _Watch] = {}

    def state(self, number: str) -> list[DialogState]:
        return list(self._calls.get(number, {}).values())

    def watch(self, call: Call) -> None:
        """The call core's watcher: a call rang, was answered or ended."""
        state = STATE_OF.get(call.state)
        # An opaque id per call: the Call-ID itself never leaves for a third phone.
        opaque = hashlib.sha256(call.id.encode()).hexdigest()[:16]
        for number, direction in (
            (call.caller.number, "initiator"),
            (call.callee.number, "recipient"),
        ):
            calls = self._calls.setdefault(number, {})
            before = calls.get(call.id)
            if state is None:
                calls.pop(call.id, None)
            else:
                calls[call.id] = DialogState(opaque, state, direction)
            if not calls:
                self._calls.pop(number, None)
            if calls.get(call.id) != before:
                self._changed(number)

    def _changed(self, number: str) -> None:
        for watch in list(self._watches.values()):
            if watch.number == number:
                self._notify(watch, f"active;expires={DEFAULT_EXPIRES}")

    async def handle(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        reply = self.endpoint.reply
        checked = await self.authenticator.check(request, flow.host, proxy=False, user_hint="")
        if isinstance(checked, Challenge):
            reply(transaction, checked.status, headers=checked.headers)
            return
        try:
            wanted = int(request.headers.get("Expires") or DEFAULT_EXPIRES)
        except ValueError:
            reply(transaction, 400, reason="Bad Request (Expires)")
            return
        expires = 0 if wanted <= 0 else max(MIN_EXPIRES, min(wanted, DEFAULT_EXPIRES))
        key = (request.call_id, request.to_tag or "")
        known = self._watches.get(key) if request.to_tag is not None else None
        if request.to_tag is not None:
            if known is None or not known.dialog.receive_request(request):
                reply(transaction, 481)
                return
            response = request.response(200)
            number = known.number
        else:
            uri = request.uri
            number = uri.user if isinstance(uri, SipUri) and uri.user else ""
            watched = await self.accounts.get(number) if number else None
            if watched is None:
                reply(transaction, 404)
                return
            response = request.response(200, to_tag=new_tag())
        contact = self.endpoint.local_uri(number, flow.transport)
        response.headers.add("Expires", str(expires))
        response.headers.add("Contact", f"<{contact}>")
        self.endpoint.respond(transaction, response)
        if request.to_tag is None:
            try:
                dialog = Dialog.from_uas(request, response)
            except SipParseError:
                return
            key = (request.call_id, dialog.local_tag)
            known = _Watch(dialog, number, flow, contact)
        assert known is not None
        watch = known
        if expires:
            self._watches[key] = watch
            self._notify(watch, f"active;expires={expires}")
        else:
            self._watches.pop(key, None)
            self._notify(watch, "terminated;reason=timeout")
        log.info("blf.subscribed", watcher=checked.number, number=number, expires=expires)

    def _notify(self, watch: _Watch, state: str) -> None:
        body = dialog_info(
            f"sip:{watch.number}@{self.realm}", watch.version, self.state(watch.number)
        )
        watch.version += 1
        notify = watch.dialog.create_request(
            "NOTIFY",
            via=self.endpoint.via(watch.flow.transport),
            contact=NameAddr(parse_uri(watch.contact)),
            body=body,
            content_type=CONTENT_TYPE,
            headers=[("Event", EVENT), ("Subscription-State", state)],
        )
        self.endpoint.send_request(notify, watch.flow)
