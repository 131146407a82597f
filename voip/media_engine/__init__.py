"""Media workers: a supervised pool of pjsua2 processes that answer calls for features."""

from .pool import CALLS_PER_WORKER, MediaPool, WorkerProcess
from .session import MediaApp, MediaSession, SessionEnded

__all__ = [
    "CALLS_PER_WORKER",
    "MediaApp",
    "MediaPool",
    "MediaSession",
    "SessionEnded",
    "WorkerProcess",
]
