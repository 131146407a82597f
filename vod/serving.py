"""Answering a media request: conditional and Range headers, playlists from memory, sendfile.

The routes in :mod:`vod.api` check who may see an item (a staff session or a signed
link) and name the file; this module answers for that file with as few system calls
and as little Python as it can, because segments and playlists are most of what the
server is asked for once programmes are watched:

- a file is opened and ``fstat``-ed once, on the event loop (local files; no stat of
  the path first, no thread hop), and a segment goes out by ``sendfile``;
- small playlists are kept in memory, keyed by path and checked against the file's
  ``(mtime_ns, size, inode)`` at each request, so a rewritten or replaced playlist is
  served new at once and a deleted one is gone (one ``stat``, no open, no read);
- ETag (the same value aiohttp's ``FileResponse`` gives), ``If-None-Match``,
  ``If-Modified-Since``, ``If-Match``, ``If-Unmodified-Since``, ``Range`` and
  ``If-Range`` are answered as ``FileResponse`` answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import stat
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

# Playlists of a 30-day VOD archive are a few KiB (a 2-hour programme: ~1,200 segment
# lines, ~40 KiB); anything bigger is sent from the file like a segment.
PLAYLIST_SUFFIX = ".m3u8"
CACHED_FILE_BYTES = 256 * 1024
CACHED_FILES = 2048
OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # never block on a FIFO


@dataclass(frozen=True)
class FileFacts:
    """What the headers say about one version of a file."""

    size: int
    mtime: float
    etag: str  # quoted
    last_modified: str


def facts_of(st: os.stat_result) -> FileFacts:
    return FileFacts(
        size=st.st_size,
        mtime=st.st_mtime,
        etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
        # Rounded up, as aiohttp does: a client's If-Modified-Since echo is then not older.
        last_modified=formatdate(math.ceil(st.st_mtime), usegmt=True),
    )


class PlaylistCache:
    """Small files by path, each valid for one ``(mtime_ns, size, inode)`` of its file."""

    def __init__(self, entries: int = CACHED_FILES, max_bytes: int = CACHED_FILE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, tuple[tuple[int, int, int], FileFacts, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, path: str) -> tuple[FileFacts, bytes] | None:
        """The file's facts and bytes; None when it is missing or not a regular file.

        Raises :class:`TooBig` for a file above ``max_bytes`` (send it from disk).
        """
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._files.pop(path, None)
            return None
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._files.get(path)
        if cached is not None and cached[0] == version:
            self.hits += 1
            return cached[1], cached[2]
        self.misses += 1
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > self.max_bytes:
            raise TooBig
        try:
            with open(path, "rb", buffering=0) as file:
                st = os.fstat(file.fileno())
                body = file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        facts = facts_of(st)
        if len(body) != st.st_size:
            # Written to while we read (published playlists never are): nothing kept.
            return FileFacts(len(body), facts.mtime, facts.etag, facts.last_modified), body
        self._files[path] = ((st.st_mtime_ns, st.st_size, st.st_ino), facts, body)
        self._files.move_to_end(path)
        while len(self._files) > self.entries:
            self._files.popitem(last=False)
        return facts, body

    def __len__(self) -> int:
        return len(self._files)


class TooBig(Exception):
    """A playlist too big to keep in memory."""


class SignatureCache:
    """Signed-link signatures already verified: a dict lookup instead of an HMAC.

    Whether a signature is right depends only on the key, the expiry and the secret,
    so a verified one stays right; the expiry is still compared with the clock at
    every request by the caller. Only successes are kept, at most ``entries``.
    """

    def __init__(self, entries: int = 16384) -> None:
        self.entries = entries
        self._good: set[tuple[str, str, str]] = set()

    def known(self, key: str, expires: str, signature: str) -> bool:
        return (key, expires, signature) in self._good

    def add(self, key: str, expires: str, signature: str) -> None:
        if len(self._good) >= self.entries:
            self._good.clear()
        self._good.add((key, expires, signature))


def _not_modified(request: web.BaseRequest, facts: FileFacts) -> bool:
    if (etags := request.if_none_match) is not None:
        value = facts.etag[1:-1]
        return any(tag.value in (value, "*") for tag in etags)
    since = request.if_modified_since
    return since is not None and facts.mtime <= since.timestamp()


def _precondition_failed(request: web.BaseRequest, facts: FileFacts) -> bool:
    if (etags := request.if_match) is not None:
        value = facts.etag[1:-1]
        return not any(
            tag.value == "*" or (tag.value == value and not tag.is_weak) for tag in etags
        )
    since = request.if_unmodified_since
    return since is not None and facts.mtime > since.timestamp()


class RangeNotSatisfiable(Exception):
    pass


def byte_range(request: web.BaseRequest, facts: FileFacts) -> tuple[int, int] | None:
    """``(start, count)`` of a Range to honour, None for the whole file.

    A Range is ignored when ``If-Range`` names another version (a date before the
    file's last change, or another ETag); :class:`RangeNotSatisfiable` for a range
    outside the file or one that cannot be read.
    """
    if hdrs.RANGE not in request.headers:
        return None
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None:
        if if_range.startswith(('"', "W/")):
            if if_range != facts.etag:
                return None
        else:
            since = request.if_range
            if since is None or facts.mtime > since.timestamp():
                return None
    try:
        wanted = request.http_range
    except ValueError:
        raise RangeNotSatisfiable from None
    start, stop, size = wanted.start, wanted.stop, facts.size
    if start is None:
        return None
    if start < 0 and stop is None:  # the last N bytes
        start = max(0, size + start)
        count = size - start
    else:
        count = min(stop if stop is not None else size, size) - start
    if start >= size or count <= 0:
        raise RangeNotSatisfiable
    return start, count


class MediaResponder:
    """Answers for files under one folder; the caller has checked the path's shape."""

    def __init__(self, playlists: PlaylistCache | None = None) -> None:
        self.playlists = playlists or PlaylistCache()
        # Header values per file version (formatting a date costs more than the fstat).
        self._facts: dict[tuple[int, int, int], FileFacts] = {}

    def facts(self, st: os.stat_result) -> FileFacts:
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        found = self._facts.get(version)
        if found is None:
            if len(self._facts) >= CACHED_FILES * 4:
                self._facts.clear()
            found = self._facts[version] = facts_of(st)
        return found

    def respond(
        self, request: web.BaseRequest, path: str, headers: dict[str, str]
    ) -> tuple[web.StreamResponse, int]:
        """The response to return and how many body bytes it will carry.

        Raises ``HTTPNotFound`` for a missing file or anything but a regular file.
        """
        if path.endswith(PLAYLIST_SUFFIX):
            try:
                found = self.playlists.get(path)
            except TooBig:
                pass
            else:
                if found is None:
                    raise web.HTTPNotFound(text="no such media file")
                facts, body = found
                return self._from_memory(request, facts, body, headers)
        return self._from_file(request, path, headers)

    def _head(
        self, request: web.BaseRequest, facts: FileFacts, headers: dict[str, str]
    ) -> tuple[int, tuple[int, int] | None, dict[str, str]]:
        """Status, range and headers of the answer, before any body."""
        out = {
            **headers,
            hdrs.ETAG: facts.etag,
            hdrs.LAST_MODIFIED: facts.last_modified,
            hdrs.ACCEPT_RANGES: "bytes",
        }
        if _precondition_failed(request, facts):
            return 412, None, out
        if _not_modified(request, facts):
            return 304, None, out
        try:
            wanted = byte_range(request, facts)
        except RangeNotSatisfiable:
            out[hdrs.CONTENT_RANGE] = f"bytes */{facts.size}"
            return 416, None, out
        if wanted is not None:
            start, count = wanted
            out[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + count - 1}/{facts.size}"
            return 206, wanted, out
        return 200, None, out

    def _from_memory(
        self, request: web.BaseRequest, facts: FileFacts, body: bytes, headers: dict[str, str]
    ) -> tuple[web.StreamResponse, int]:
        status, wanted, out = self._head(request, facts, headers)
        if status in (304, 412, 416):
            return _empty(status, out), 0
        if wanted is not None:
            start, count = wanted
            body = body[start : start + count]
        response = web.Response(status=status, body=body, headers=out)
        return response, 0 if request.method == hdrs.METH_HEAD else len(body)

    def _from_file(
        self, request: web.BaseRequest, path: str, headers: dict[str, str]
    ) -> tuple[web.StreamResponse, int]:
        try:
            fd = os.open(path, OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise web.HTTPNotFound(text="no such media file") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise web.HTTPNotFound(text="no such media file")
            facts = self.facts(st)
            status, wanted, out = self._head(request, facts, headers)
            if status in (304, 412, 416):
                return _empty(status, out), 0
        except BaseException:
            os.close(fd)
            raise
        start, count = wanted if wanted is not None else (0, facts.size)
        response = SendfileResponse(fd, start, count, status, out)
        return response, 0 if request.method == hdrs.METH_HEAD else count


class SendfileResponse(web.StreamResponse):
    """An open file's bytes ``[start, start + count)``, sent when aiohttp prepares it.

    Sent in ``prepare`` (as ``FileResponse`` does), after the handler and its
    middlewares have returned, so a viewer who goes away mid-segment ends the send
    quietly in aiohttp rather than as an error of the handler. The response owns
    ``fd``: closed once sent, or when the response is dropped unsent.
    """

    def __init__(self, fd: int, start: int, count: int, status: int, headers: dict[str, str]):
        self._fd = fd  # owned from here on, whatever happens next
        super().__init__(status=status, headers=headers)
        self.content_length = count
        self._offset = start
        self._count = count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        transport = request.transport
        sock = _plain_socket(transport)
        if sock is not None:
            # Headers and body in full segments (nginx's tcp_nopush): the headers wait
            # in the socket for the file's first bytes instead of leaving alone.
            _cork(sock, True)
        try:
            writer = await super().prepare(request)
            if self._count and request.method != hdrs.METH_HEAD:
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("the client went away")
                offset, count = self._offset, self._count
                if sock is not None and transport.get_write_buffer_size() == 0:
                    # Nothing of ours waits in the transport: as much as the socket takes
                    # now goes at once, with none of loop.sendfile's reader and writer
                    # (un)registering; the loop sends the rest when the socket drains.
                    sent = _sendfile_now(sock, self._fd, offset, count)
                    offset, count = offset + sent, count - sent
                if count:
                    file = os.fdopen(self._fd, "rb", buffering=0)
                    self._fd = -1  # the file object closes it now
                    try:
                        loop = asyncio.get_running_loop()
                        count -= await loop.sendfile(transport, file, offset, count)
                    finally:
                        file.close()
                if count:
                    # The file ended early (cut short since its fstat): the client would
                    # wait for bytes announced in Content-Length; end the connection.
                    transport.close()
                    raise ConnectionResetError("the file ended before its announced length")
            await super().write_eof()
            return writer
        finally:
            self._close()
            if sock is not None:
                _cork(sock, False)

    def _close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self._close()


def _plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The TCP socket under a plain (not TLS) transport, or None."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock  # type: ignore[no-any-return]


def _cork(sock: socket.socket, on: bool) -> None:
    with contextlib.suppress(OSError):  # the client may be gone
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)


def _sendfile_now(sock: socket.socket, fd: int, offset: int, count: int) -> int:
    """What the socket takes of the file now, without waiting (0 when it is full)."""
    sent = 0
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while sent < count:
            done = os.sendfile(sock.fileno(), fd, offset + sent, count - sent)
            if done == 0:
                break
            sent += done
    return sent


def _empty(status: int, headers: dict[str, str]) -> web.Response:
    if status != 416:
        headers.pop(hdrs.CONTENT_RANGE, None)
    response = web.Response(status=status, headers=headers)
    if status == 304:
        # No body and no Content-Length of a body that is not sent (RFC 9110 15.4.5).
        response.headers.pop(hdrs.CONTENT_LENGTH, None)
    return response
