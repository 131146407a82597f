"""Message-waiting (RFC 3842) for a mailbox owner's phones: the asyncio adapters.

Unsolicited: whenever a mailbox changes, every registered contact of its extension
gets an out-of-dialog NOTIFY with the summary (desk phones light their lamp). The
body is :class:`voip.sip.message_summary.MessageSummary`; responses and timeouts of
these NOTIFYs need no handling (a phone that missed one gets the next). Phones
that SUBSCRIBE get the state at once (:class:`MwiSubscriptions`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from voip.sip.dialog import Dialog
from voip.sip.errors import SipParseError
from voip.sip.headers import Headers
from voip.sip.ids import new_call_id, new_tag
from voip.sip.message import Request
from voip.sip.message_summary import CONTENT_TYPE, EVENT, MessageSummary
from voip.sip.transaction import ServerTransaction
from voip.sip.uri import NameAddr, SipUri, parse_uri

from ..authn import Authenticator, Challenge
from ..endpoint import SipEndpoint
from ..location import Location
from ..transport.base import Flow

log = structlog.get_logger("voip.mwi")

DEFAULT_EXPIRES = 3600  # and the longest granted
MIN_EXPIRES = 60


class MwiNotifier:
    def __init__(
        self, endpoint: SipEndpoint, location: Location, *, realm: str, instance: str
    ) -> None:
        self.endpoint = endpoint
        self.location = location
        self.realm = realm
        self.instance = instance

    def account_uri(self, mailbox: str) -> str:
        return f"sip:{mailbox}@{self.realm}"

    async def notify(self, mailbox: str, new: int, old: int) -> int:
        """Tell every reachable phone of ``mailbox``; returns how many were sent."""
        summary = MessageSummary(new, old, self.account_uri(mailbox))
        sent = 0
        for contact in await self.location.lookup(mailbox):
            flow = contact.flow(self.instance)
            if flow is None:
                continue  # held by another node: it is told through the next change there
            try:
                uri = parse_uri(contact.uri)
            except SipParseError:
                continue
            headers = Headers()
            headers.add("Via", str(self.endpoint.via(flow.transport)))
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<{self.account_uri(mailbox)}>;tag={new_tag()}")
            headers.add("To", f"<{self.account_uri(mailbox)}>")
            headers.add("Call-ID", new_call_id())
            headers.add("CSeq", "1 NOTIFY")
            headers.add("Contact", f"<{self.endpoint.local_uri(mailbox, flow.transport)}>")
            headers.add("Event", EVENT)
            headers.add("Subscription-State", "active")
            headers.add("Content-Type", CONTENT_TYPE)
            self.endpoint.send_request(Request("NOTIFY", uri, headers, summary.body()), flow)
            sent += 1
        log.info("mwi.notified", mailbox=mailbox, new=new, old=old, phones=sent)
        return sent


class MwiSubscriptions:
    """SUBSCRIBE to ``message-summary`` (RFC 3842 §5, RFC 6665): 200, then a NOTIFY at once.

    A phone that subscribes learns its mailbox's state without waiting for the next
    change. Only the owner (digest-authenticated as the mailbox's extension) may
    subscribe. Dialogs are kept in memory for refreshes; a refresh the node does not
    know (after a restart) is answered 481, so the phone subscribes afresh.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        authenticator: Authenticator,
        counts: Callable[[str], Awaitable[tuple[int, int]]],
        *,
        realm: str,
    ) -> None:
        self.endpoint = endpoint
        self.authenticator = authenticator
        self.counts = counts
        self.realm = realm
        self._dialogs: dict[tuple[str, str], tuple[Dialog, str]] = {}

    async def handle(self, request: Request, transaction: ServerTransaction, flow: Flow) -> None:
        reply = self.endpoint.reply
        if (request.headers.get("Event") or "").split(";")[0].strip().lower() != EVENT:
            reply(transaction, 489, headers=[("Allow-Events", EVENT)])
            return
        uri = request.uri
        mailbox = uri.user if isinstance(uri, SipUri) and uri.user else ""
        checked = await self.authenticator.check(request, flow.host, proxy=False, user_hint=mailbox)
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
        if request.to_tag is not None:
            known = self._dialogs.get(key)
            if known is None or not known[0].receive_request(request):
                reply(transaction, 481)
                return
            dialog, mailbox = known
            response = request.response(200)
        else:
            if mailbox != checked.number:
                reply(transaction, 403, reason="Forbidden (not your mailbox)")
                return
            response = request.response(200, to_tag=new_tag())
        response.headers.add("Expires", str(expires))
        contact = self.endpoint.local_uri(mailbox, flow.transport)
        response.headers.add("Contact", f"<{contact}>")
        self.endpoint.respond(transaction, response)
        if request.to_tag is None:
            try:
                dialog = Dialog.from_uas(request, response)
            except SipParseError:
                return
            key = (request.call_id, dialog.local_tag)
        if expires:
            self._dialogs[key] = (dialog, mailbox)
            state = f"active;expires={expires}"
        else:
            self._dialogs.pop(key, None)
            state = "terminated;reason=timeout"
        new, old = await self.counts(mailbox)
        summary = MessageSummary(new, old, f"sip:{mailbox}@{self.realm}")
        notify = dialog.create_request(
            "NOTIFY",
            via=self.endpoint.via(flow.transport),
            contact=NameAddr(parse_uri(contact)),
            body=summary.body(),
            content_type=CONTENT_TYPE,
            headers=[("Event", EVENT), ("Subscription-State", state)],
        )
        self.endpoint.send_request(notify, flow)
        log.info("mwi.subscribed", mailbox=mailbox, expires=expires, new=new, old=old)
