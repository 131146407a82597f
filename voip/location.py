"""The location service: where each extension's phones can be reached.

The ``voip_bindings`` table is the source of truth (a restart keeps phones
reachable); the shared state holds the fast path, one hash per extension
(``voip:loc:<number>``, field = contact URI, value = JSON), so every node of a
cluster finds a phone registered on any other. The JSON also names the node and
process instance holding the phone's connection: only that instance can reuse a
TCP/TLS/WebSocket connection, everyone else uses UDP or opens a new connection.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass

import structlog
from sqlalchemy import delete, select

from core.db import Database
from core.state import SharedState
from voip.models import Binding
from voip.sip.errors import SipParseError
from voip.sip.uri import SipUri, parse_uri

from .transport.base import Flow

log = structlog.get_logger("voip.location")

# Before asking the database again about an extension the fast path knows nothing of.
_DB_RECHECK = 2.0
# node name -> "host:port" where the node takes SIP over UDP.
_NODES_KEY = "voip:nodes"


@dataclass(slots=True)
class Contact:
    """One registered contact of an extension (a binding)."""

    aor: str
    uri: str
    expires_at: float  # wall clock (epoch seconds): shared between nodes
    call_id: str
    cseq: int
    transport: str
    source: str  # host:port the REGISTER came from
    connection: int
    node: str
    instance: str
    user_agent: str = ""
    # host:port (UDP) of the node holding a stream contact's connection: other nodes
    # send that phone's requests there to be relayed down the connection.
    relay: str = ""

    @property
    def expires_in(self) -> int:
        return max(0, round(self.expires_at - time.time()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Contact | None:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None

    def flow(self, instance: str) -> Flow | None:
        """How this process reaches the phone, or None when only another node can."""
        host, _, port_text = self.source.rpartition(":")
        host = host.strip("[]")
        port = int(port_text) if port_text.isdigit() else 5060
        if self.transport == "UDP":
            # received/rport: the NAT binding the phone opened (RFC 3581).
            return Flow("UDP", host, port)
        if self.connection and self.instance == instance:
            return Flow(self.transport, host, port, self.connection)
        if self.connection and self.relay:
            relay_host, _, relay_port = self.relay.rpartition(":")
            if relay_port.isdigit():
                return Flow("UDP", relay_host, int(relay_port))
        if self.transport in ("TCP", "TLS"):
            try:
                uri = parse_uri(self.uri)
            except SipParseError:
                return None
            if isinstance(uri, SipUri):
                default = 5061 if self.transport == "TLS" else 5060
                return Flow(self.transport, uri.host.strip("[]"), uri.port or default)
        return None


class Location:
    def __init__(self, db: Database, state: SharedState, node: str = "") -> None:
        self._db = db
        self._state = state
        self.node = node
        self._db_checked: dict[str, float] = {}
        # Contacts registered through each of this process's stream connections, so a
        # dropped connection can take its bindings with it (see remove_connection).
        self._by_connection: dict[int, set[tuple[str, str]]] = {}
        self._connection_of: dict[str, int] = {}

    @staticmethod
    def _key(aor: str) -> str:
        return f"voip:loc:{aor}"

    async def lookup(self, aor: str) -> list[Contact]:
        """Unexpired contacts of an extension: the fast path, else the database."""
        now = time.time()
        fields = await self._state.hgetall(self._key(aor))
        contacts = [c for c in map(Contact.from_json, fields.values()) if c is not None]
        if not fields:
            checked = self._db_checked.get(aor, 0.0)
            if time.monotonic() - checked < _DB_RECHECK:
                return []
            self._db_checked[aor] = time.monotonic()
            contacts = await self._load(aor)
            if contacts:
                await self._cache(aor, contacts)
        alive = [c for c in contacts if c.expires_at > now]
        for contact in alive:
            if contact.relay and contact.node == self.node:
                # Registered through this node by an earlier run: the connection died
                # with it, and relaying to ourselves would only loop.
                contact.relay = ""
        return alive

    async def _load(self, aor: str) -> list[Contact]:
        from voip.models import Extension

        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(Binding)
                    .join(Extension, Extension.id == Binding.extension_id)
                    .where(Extension.number == aor)
                )
            ).scalars()
            return [
                Contact(
                    aor=aor,
                    uri=row.contact_uri,
                    expires_at=_aware(row.expires_at).timestamp(),
                    call_id=row.call_id,
                    cseq=row.cseq,
                    transport=row.transport,
                    source=row.source,
                    connection=0,
                    node=row.node,
                    instance="",
                    user_agent=row.user_agent,
                )
                for row in rows
            ]

    async def _cache(self, aor: str, contacts: list[Contact]) -> None:
        ttl = max((c.expires_at for c in contacts), default=0) - time.time()
        for contact in contacts:
            if ttl > 0:
                await self._state.hset(self._key(aor), contact.uri, contact.to_json(), ttl=ttl)

    async def replace(
        self, extension_id: int, aor: str, keep: list[Contact], removed: list[str]
    ) -> None:
        """Store the extension's contacts after a REGISTER: database first, then fast path."""
        async with self._db.session() as session:
            if removed:
                await session.execute(
                    delete(Binding).where(
                        Binding.extension_id == extension_id, Binding.contact_uri.in_(removed)
                    )
                )
            existing = {
                row.contact_uri: row
                for row in (
                    await session.scalars(
                        select(Binding).where(Binding.extension_id == extension_id)
                    )
                ).all()
            }
            for contact in keep:
                row = existing.get(contact.uri)
                if row is None:
                    row = Binding(extension_id=extension_id, contact_uri=contact.uri)
                    session.add(row)
                row.call_id = contact.call_id[:200]
                row.cseq = contact.cseq
                row.expires_at = dt.datetime.fromtimestamp(contact.expires_at, dt.UTC)
                row.transport = contact.transport
                row.source = contact.source[:100]
                row.user_agent = contact.user_agent[:200]
                row.node = contact.node[:100]
                row.registered_at = dt.datetime.now(dt.UTC)
        key = self._key(aor)
        for uri in removed:
            await self._state.hdel(key, uri)
        await self._cache(aor, keep)
        self._db_checked.pop(aor, None)
        for contact in keep:
            if contact.connection:
                self._by_connection.setdefault(contact.connection, set()).add((aor, contact.uri))
                self._connection_of[contact.uri] = contact.connection

    def local_connection(self, uri: str) -> int:
        """The connection of ours a contact registered through (0: none)."""
        return self._connection_of.get(uri, 0)

    async def publish_node(self, node: str, address: str) -> None:
        """Say where this node takes SIP, so others can ask it to relay (see voip.relay)."""
        await self._state.hset(_NODES_KEY, node, address)

    async def node_addresses(self) -> set[str]:
        return set((await self._state.hgetall(_NODES_KEY)).values())

    async def remove_connection(self, connection: int, instance: str) -> list[Contact]:
        """Forget the bindings that lived on a stream connection that has closed.

        Over TCP, TLS and WebSocket the connection is the flow (RFC 5626 §4.2, RFC 7118
        §5): once it is gone nothing can reach those contacts (a WebSocket client
        accepts no connections, a phone behind NAT none either), so they are removed
        from the database and the fast path rather than left to expire. A contact the
        phone has meanwhile re-registered over a new connection is kept.
        """
        from voip.models import Extension

        removed: list[Contact] = []
        for aor, uri in self._by_connection.pop(connection, set()):
            if self._connection_of.get(uri) == connection:
                del self._connection_of[uri]
            fields = await self._state.hgetall(self._key(aor))
            current = Contact.from_json(fields.get(uri, ""))
            if current is None or current.connection != connection:
                continue
            if current.instance != instance:
                continue
            async with self._db.session() as session:
                await session.execute(
                    delete(Binding)
                    .where(
                        Binding.contact_uri == uri,
                        Binding.extension_id.in_(
                            select(Extension.id).where(Extension.number == aor)
                        ),
                    )
                    .execution_options(synchronize_session=False)
                )
            await self._state.hdel(self._key(aor), uri)
            removed.append(current)
        return removed

    async def purge_expired(self) -> int:
        async with self._db.session() as session:
            result = await session.execute(
                delete(Binding).where(Binding.expires_at < dt.datetime.now(dt.UTC))
            )
        return int(getattr(result, "rowcount", 0) or 0)


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
