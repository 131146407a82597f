"""The per-recipient delivery state machine (sans-I/O).

States only move forward, so a late or duplicated provider callback can never
undo what is known: ``delivered`` is not overwritten by a ``sent`` that arrives
after it. The single backwards step is ``sending -> queued``, allowed only when
the provider refused the request outright (nothing left the building) or when
reconciliation proved the provider never got it.
"""

from __future__ import annotations

import enum


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACKNOWLEDGED = "acknowledged"


RANK: dict[DeliveryState, int] = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.DELIVERED: 3,
    DeliveryState.UNDELIVERED: 3,
    DeliveryState.FAILED: 3,
    DeliveryState.CANCELLED: 3,
    DeliveryState.ACKNOWLEDGED: 4,
}

FINAL = frozenset(
    {
        DeliveryState.DELIVERED,
        DeliveryState.UNDELIVERED,
        DeliveryState.FAILED,
        DeliveryState.CANCELLED,
        DeliveryState.ACKNOWLEDGED,
    }
)
# Rows the engine still owes work to.
PENDING = frozenset({DeliveryState.QUEUED, DeliveryState.SENDING})

# Twilio's message statuses mapped onto ours; the provider's own queueing states all
# mean "handed over" from our side.
PROVIDER_STATUS: dict[str, DeliveryState] = {
    "accepted": DeliveryState.SENT,
    "scheduled": DeliveryState.SENT,
    "queued": DeliveryState.SENT,
    "sending": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}


def can_move(current: DeliveryState, target: DeliveryState) -> bool:
    """Whether ``current -> target`` is allowed."""
    if current is DeliveryState.SENDING and target is DeliveryState.QUEUED:
        return True
    if target is DeliveryState.CANCELLED:
        return current is DeliveryState.QUEUED
    if target is DeliveryState.ACKNOWLEDGED:
        # A reply proves receipt even if the delivery report said otherwise.
        return current in {
            DeliveryState.SENT,
            DeliveryState.DELIVERED,
            DeliveryState.UNDELIVERED,
            DeliveryState.FAILED,
        }
    if current is DeliveryState.CANCELLED:
        return False
    return RANK[target] > RANK[current]


def sources_of(target: DeliveryState) -> frozenset[DeliveryState]:
    """Every state from which ``target`` may be reached: the guard of an UPDATE."""
    return frozenset(state for state in DeliveryState if can_move(state, target))


def from_provider(status: str) -> DeliveryState | None:
    return PROVIDER_STATUS.get(status.strip().lower())
