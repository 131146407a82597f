"""The registrar (RFC 3261 §10.3): REGISTER with digest auth, expiry, several contacts."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from voip.sip.errors import SipParseError
from voip.sip.message import Request
from voip.sip.transaction import ServerTransaction
from voip.sip.uri import SipUri

from .accounts import Account
from .authn import Authenticator, Challenge
from .endpoint import SipEndpoint
from .location import Contact, Location
from .transport.base import Flow

log = structlog.get_logger("voip.registrar")

# A phone or two per desk is normal; hundreds of contacts for one number is abuse.
MAX_CONTACTS = 10


@dataclass(frozen=True)
class ExpiryPolicy:
    minimum: int
    maximum: int
    default: int


class RegistrarError(Exception):
    def __init__(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or []


class Registrar:
    def __init__(
        self,
        endpoint: SipEndpoint,
        authenticator: Authenticator,
        location: Location,
        policy: ExpiryPolicy,
        *,
        node: str,
        instance: str,
    ) -> None:
        self._endpoint = endpoint
        self._auth = authenticator
        self._location = location
        self.policy = policy
        self.node = node
        self.instance = instance

    def _relay_address(self) -> str:
        """Where other nodes reach this one to relay to a phone's connection (UDP)."""
        return f"{self._endpoint.advertised_host}:{self._endpoint.ports.get('UDP', 0)}"

    async def handle(self, request: Request, transaction: ServerTransaction, flow: Flow) -> str:
        """Serve one REGISTER; returns the outcome for the metrics."""
        to_uri = request.to.uri
        aor = to_uri.user if isinstance(to_uri, SipUri) and to_uri.user else ""
        checked = await self._auth.check(request, flow.host, proxy=False, user_hint=aor)
        if isinstance(checked, Challenge):
            self._endpoint.reply(transaction, checked.status, headers=checked.headers)
            return "challenged" if checked.status == 401 else "refused"
        account = checked
        if account.number != aor:
            # Credentials of one extension may not register another's address.
            self._endpoint.reply(transaction, 403)
            return "refused"
        try:
            contacts = await self._update(request, account, flow)
        except RegistrarError as error:
            self._endpoint.reply(transaction, error.status, headers=error.headers)
            return "refused"
        except SipParseError as error:
            self._endpoint.reply(transaction, 400, reason=f"Bad Request ({error})"[:80])
            return "refused"
        headers = [("Contact", f"<{c.uri}>;expires={c.expires_in}") for c in contacts]
        headers.append(("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())))
        self._endpoint.reply(transaction, 200, headers=headers)
        return "registered" if contacts else "unregistered"

    async def _update(self, request: Request, account: Account, flow: Flow) -> list[Contact]:
        aor = account.number
        call_id = request.call_id
        cseq = request.cseq.number
        header_expires = request.expires
        current = {c.uri: c for c in await self._location.lookup(aor)}
        if request.is_contact_wildcard:
            if header_expires != 0:
                raise RegistrarError(400)
            for contact in current.values():
                if contact.call_id == call_id and cseq <= contact.cseq:
                    raise RegistrarError(500)
            await self._location.replace(account.id, aor, [], list(current))
            log.info("sip.unregistered_all", ext=aor, source=str(flow))
            return []
        now = time.time()
        user_agent = request.headers.get("User-Agent", "") or ""
        keep: dict[str, Contact] = dict(current)
        changed: list[Contact] = []
        removed: list[str] = []
        for value in request.contacts:
            uri = str(value.uri)
            expires_param = value.params.get("expires")
            if expires_param is not None:
                if not expires_param.isdigit() or len(expires_param) > 10:
                    raise RegistrarError(400)
                expires = int(expires_param)
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.policy.default
            if 0 < expires < self.policy.minimum:
                raise RegistrarError(423, [("Min-Expires", str(self.policy.minimum))])
            expires = min(expires, self.policy.maximum)
            existing = keep.get(uri)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                # An old REGISTER overtaken by a newer one (§10.3 step 7).
                raise RegistrarError(500)
            if expires == 0:
                if uri in keep:
                    del keep[uri]
                    removed.append(uri)
                continue
            contact = Contact(
                aor=aor,
                uri=uri,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                transport=flow.transport,
                source=f"{flow.host}:{flow.port}",
                connection=flow.connection,
                node=self.node,
                instance=self.instance,
                user_agent=user_agent,
                relay=self._relay_address() if flow.connection else "",
            )
            keep[uri] = contact
            changed.append(contact)
        if len(keep) > MAX_CONTACTS:
            raise RegistrarError(403)
        await self._location.replace(account.id, aor, changed, removed)
        if changed or removed:
            log.info(
                "sip.registered",
                ext=aor,
                source=str(flow),
                contacts=len(keep),
                expires=[c.expires_in for c in changed],
                user_agent=user_agent[:60],
            )
        return list(keep.values())
