"""Protection of the exchange against floods, password guessing and extension scans.

- Every request counts against its source's rate (a fixed one-second window kept in
  this node's memory: a source's packets reach one node, and a shared counter would
  cost a network round trip per packet on the hot path).
- Digest failures count only after a challenge (a first 401/407 is normal) and are
  kept in the shared state, per source and per extension, so several nodes add up.
- A source that passes a threshold is banned for a while: its packets are dropped
  without an answer. Bans are written to the shared state so every node drops it.
- A source that asks for many different users without ever proving a password is a
  scanner (sipvicious svwar): it is banned too.
- Trusted networks (trunks, media workers) are never limited or banned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter

from core.state import SharedState

log = structlog.get_logger("voip.protection")

# How often a node re-reads the shared ban of a source it sees.
_BAN_RECHECK = 5.0


class Protection:
    def __init__(
        self,
        state: SharedState,
        *,
        rate_limit: int,
        ban_threshold: int,
        ban_seconds: float,
        scan_threshold: int,
        trusted: list[str],
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self.rate_limit = rate_limit
        self.ban_threshold = ban_threshold
        self.ban_seconds = ban_seconds
        self.scan_threshold = scan_threshold
        self._trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted]
        self._trusted_cache: dict[str, bool] = {}
        self._clock = clock
        self._window = 0
        self._counts: dict[str, int] = {}
        self._banned: dict[str, float] = {}
        self._checked: dict[str, float] = {}
        self._challenged: dict[str, tuple[float, set[str]]] = {}
        self._locked: dict[str, float] = {}
        self._excess: dict[str, tuple[float, int]] = {}
        self.bans = Counter("unicomm_sip_bans", "Sources banned", ["reason"], registry=registry)
        self.dropped = Counter(
            "unicomm_sip_dropped", "Requests dropped unanswered", ["reason"], registry=registry
        )

    def trust(self, cidr: str) -> None:
        """Exempt a network from limits and bans from now on (the media workers' address)."""
        network = ipaddress.ip_network(cidr, strict=False)
        if network not in self._trusted:
            self._trusted.append(network)
            self._trusted_cache.clear()

    def is_trusted(self, host: str) -> bool:
        known = self._trusted_cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
                known = any(address in network for network in self._trusted)
            except ValueError:
                known = False
            if len(self._trusted_cache) > 100_000:
                self._trusted_cache.clear()
            self._trusted_cache[host] = known
        return known

    def is_banned(self, host: str) -> bool:
        until = self._banned.get(host)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._banned[host]
        return False

    def admit(self, host: str) -> bool:
        """Count one request; False means drop it silently."""
        if self._trusted and self.is_trusted(host):
            return True
        now = self._clock()
        if self._banned and self.is_banned(host):
            self.dropped.labels("banned").inc()
            return False
        checked = self._checked.get(host)
        if checked is None or now - checked > _BAN_RECHECK:
            self._checked[host] = now
            if len(self._checked) > 100_000:
                self._checked.clear()
            asyncio.get_running_loop().create_task(self._load_shared_ban(host))
        window = int(now)
        if window != self._window:
            self._window = window
            self._counts = {}
        count = self._counts.get(host, 0) + 1
        self._counts[host] = count
        if count > self.rate_limit:
            if count == self.rate_limit + 1:
                log.warning("sip.rate_limited", source=host, limit=self.rate_limit)
            self.dropped.labels("rate").inc()
            # Drops add up across windows: far over the limit for a while is a flood,
            # not a busy phone. The tally restarts after a quiet minute.
            started, excess = self._excess.get(host, (now, 0))
            if now - started > 60:
                started, excess = now, 0
            self._excess[host] = (started, excess + 1)
            if excess + 1 > 2 * self.rate_limit:
                self._excess.pop(host, None)
                self.ban(host, "flood")
            return False
        return True

    async def _load_shared_ban(self, host: str) -> None:
        try:
            value = await self._state.get(f"voip:ban:{host}")
        except Exception:  # the shared state being down must not stop calls
            return
        if value is not None:
            remaining = float(value) - time.time()
            if remaining > 0:
                self._banned[host] = self._clock() + remaining

    def ban(self, host: str, reason: str) -> None:
        if self.is_trusted(host) or self.is_banned(host):
            return
        self._banned[host] = self._clock() + self.ban_seconds
        self.bans.labels(reason).inc()
        log.warning("sip.banned", source=host, reason=reason, seconds=self.ban_seconds)
        until = str(time.time() + self.ban_seconds)
        asyncio.get_running_loop().create_task(
            self._state.set(f"voip:ban:{host}", until, ttl=self.ban_seconds)
        )

    def challenged(self, host: str, user: str) -> None:
        """A request from ``host`` for ``user`` was challenged (no credentials yet)."""
        if self._trusted and self.is_trusted(host):
            return
        now = self._clock()
        started, users = self._challenged.get(host, (now, set()))
        if now - started > self.ban_seconds:
            started, users = now, set()
        users.add(user)
        self._challenged[host] = (started, users)
        if len(users) > self.scan_threshold:
            self._challenged.pop(host, None)
            self.ban(host, "scan")

    def authenticated(self, host: str) -> None:
        """A correct password from ``host``: it is a real phone, not a scanner."""
        self._challenged.pop(host, None)

    async def failed(self, host: str, user: str) -> bool:
        """Count a wrong answer to a challenge; True when the extension is now locked."""
        if self.is_trusted(host):
            return False
        try:
            by_source = await self._state.incr(f"voip:authfail:ip:{host}", self.ban_seconds)
            by_user = await self._state.incr(f"voip:authfail:ext:{user}", self.ban_seconds)
        except Exception:
            return False
        log.info("sip.auth_failed", source=host, user=user, failures=by_source)
        if by_source >= self.ban_threshold:
            self.ban(host, "auth")
        # An extension attacked from many sources is locked for everyone but trusted ones;
        # the count is shared, so whichever node sees the last failure locks it.
        if by_user >= 3 * self.ban_threshold:
            if user not in self._locked:
                log.warning("sip.extension_locked", user=user, seconds=self.ban_seconds)
            self._locked[user] = self._clock() + self.ban_seconds
            return True
        return False

    def extension_locked(self, user: str) -> bool:
        until = self._locked.get(user)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._locked[user]
        return False
