"""Media answers through the app's routes: playlists from memory, conditional and Range
requests, sendfile, and what the caches may and may not remember.

The files are written straight into an item folder (no transcode): serving looks at
the folder, not at the catalogue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from pathlib import Path

import aiohttp
import pytest
from conftest import Staff
from sqlalchemy import delete

from core.auth import SESSION_CACHE_SECONDS
from core.models import WebSession
from media import hls
from vod import serving
from vod.serving import PlaylistCache, TooBig

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg00000.ts\n"
SEGMENT = bytes(range(256)) * 40  # 10,240 bytes


def item_folder(staff: Staff) -> tuple[str, Path]:
    key = uuid.uuid4().hex
    folder = staff.service.items / key
    (folder / "v0").mkdir(parents=True)
    (folder / "v0" / "index.m3u8").write_text(PLAYLIST)
    (folder / "v0" / "seg00000.ts").write_bytes(SEGMENT)
    (folder / hls.MASTER_NAME).write_text("#EXTM3U\n")
    return key, folder


def signed_base(staff: Staff, key: str) -> str:
    path, _ = staff.service.signed_path(key)
    return path.rsplit("/", 1)[0]


async def test_a_playlist_is_served_from_memory_until_its_file_changes(staff: Staff) -> None:
    key, folder = item_folder(staff)
    url = signed_base(staff, key) + "/v0/index.m3u8"
    cache = staff.service.responder.playlists
    first = await staff.client.get(url)
    assert first.status == 200 and await first.text() == PLAYLIST
    assert first.headers["Content-Type"] == hls.PLAYLIST_MIME
    assert first.headers["Cache-Control"] == "public, max-age=300"
    hits = cache.hits
    again = await staff.client.get(url)
    assert await again.text() == PLAYLIST and cache.hits == hits + 1
    assert again.headers["ETag"] == first.headers["ETag"]

    # Rewritten in place (another size and time): the new text at once.
    playlist = folder / "v0" / "index.m3u8"
    playlist.write_text(PLAYLIST + "#EXT-X-ENDLIST\n")
    changed = await staff.client.get(url)
    assert await changed.text() == PLAYLIST + "#EXT-X-ENDLIST\n"
    assert changed.headers["ETag"] != first.headers["ETag"]

    # Replaced by a rename with the same size and time: the inode tells it apart.
    stat = playlist.stat()
    replacement = folder / "v0" / "new.m3u8"
    replacement.write_text(PLAYLIST.replace("seg00000", "seg00009") + "#EXT-X-ENDLIST\n")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.rename(playlist)
    assert "seg00009" in await (await staff.client.get(url)).text()

    # Removed (retention): gone, and forgotten.
    playlist.unlink()
    assert (await staff.client.get(url)).status == 404
    assert str(playlist) not in cache._files


async def test_conditional_and_range_requests(staff: Staff) -> None:
    key, _ = item_folder(staff)
    base = signed_base(staff, key)
    for url, body in ((base + "/v0/seg00000.ts", SEGMENT), (base + "/v0/index.m3u8", PLAYLIST)):
        data = body if isinstance(body, bytes) else body.encode()
        full = await staff.client.get(url)
        assert full.status == 200 and await full.read() == data
        assert full.headers["Accept-Ranges"] == "bytes"
        assert int(full.headers["Content-Length"]) == len(data)
        etag, modified = full.headers["ETag"], full.headers["Last-Modified"]

        assert (await staff.client.get(url, headers={"If-None-Match": etag})).status == 304
        assert (await staff.client.get(url, headers={"If-None-Match": f"W/{etag}"})).status == 304
        assert (await staff.client.get(url, headers={"If-Modified-Since": modified})).status == 304
        assert (await staff.client.get(url, headers={"If-None-Match": '"other"'})).status == 200
        assert (await staff.client.get(url, headers={"If-Match": '"other"'})).status == 412

        part = await staff.client.get(url, headers={"Range": "bytes=10-19"})
        assert part.status == 206 and await part.read() == data[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        tail = await staff.client.get(url, headers={"Range": "bytes=-5"})
        assert tail.status == 206 and await tail.read() == data[-5:]
        rest = await staff.client.get(url, headers={"Range": f"bytes={len(data) - 3}-"})
        assert await rest.read() == data[-3:]
        beyond = await staff.client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"
        # If-Range: the range only for the version named.
        same = await staff.client.get(url, headers={"Range": "bytes=0-1", "If-Range": etag})
        assert same.status == 206 and await same.read() == data[:2]
        other = await staff.client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"x"'})
        assert other.status == 200 and await other.read() == data

        head = await staff.client.head(url)
        assert head.status == 200 and int(head.headers["Content-Length"]) == len(data)
        assert await head.read() == b""


async def test_only_regular_files_under_an_item(staff: Staff) -> None:
    key, folder = item_folder(staff)
    base = signed_base(staff, key)
    (folder / "v1.ts").mkdir()  # a folder named like a segment
    os.mkfifo(folder / "pipe.ts")  # would block an open without O_NONBLOCK
    for name in ("v1.ts", "pipe.ts", "v0/seg00001.ts", "nothing.m3u8"):
        assert (await staff.client.get(f"{base}/{name}")).status == 404, name


async def test_staff_and_signed_access_still_checked(staff: Staff) -> None:
    key, _ = item_folder(staff)
    staff_url = f"/vod/media/{key}/v0/seg00000.ts"
    assert (await staff.client.get(staff_url)).status == 401
    served = await staff.client.get(staff_url, headers=staff.viewer)
    assert served.status == 200 and await served.read() == SEGMENT
    assert served.headers["Cache-Control"] == "private, max-age=86400, immutable"

    # A verified signature is remembered; its expiry is still read from the clock.
    url = signed_base(staff, key) + "/v0/seg00000.ts"
    assert (await staff.client.get(url)).status == 200
    assert (await staff.client.get(url)).status == 200
    parts = url.split("/")  # ['', 'vod', 's', expires, sig, key, 'v0', 'seg00000.ts']
    service = staff.service
    clock = service.clock
    try:
        service.clock = lambda: clock() + dt.timedelta(days=3650)
        assert (await staff.client.get(url)).status == 403
    finally:
        service.clock = clock
    forged = "/".join([*parts[:4], "f" * 32, *parts[5:]])
    assert (await staff.client.get(forged)).status == 403


def test_playlist_cache_is_bounded(tmp_path: Path) -> None:
    cache = PlaylistCache(entries=2, max_bytes=100)
    files = []
    for index in range(3):
        path = tmp_path / f"{index}.m3u8"
        path.write_text(f"#EXTM3U\n#{index}\n")
        files.append(str(path))
        found = cache.get(str(path))
        assert found is not None and found[1] == f"#EXTM3U\n#{index}\n".encode()
    assert len(cache) == 2 and files[0] not in cache._files
    big = tmp_path / "big.m3u8"
    big.write_text("#" * 101)
    with pytest.raises(TooBig):  # sent from the file instead
        cache.get(str(big))
    assert cache.get(str(tmp_path)) is None  # a folder


async def test_a_revoked_session_stops_being_served_within_the_cache_lifetime(
    staff: Staff,
) -> None:
    key, _ = item_folder(staff)
    url = f"/vod/media/{key}/v0/seg00000.ts"
    now = [1000.0]
    staff.ctx.auth.monotonic = lambda: now[0]
    login = await staff.client.post(
        "/api/auth/login", json={"username": "viewer", "password": "long-enough-pw"}
    )
    assert login.status == 200  # the session cookie is in the client's jar now
    assert (await staff.client.get(url)).status == 200
    async with staff.ctx.db.session() as session:
        await session.execute(delete(WebSession))  # revoked (say, by another node)
    now[0] += SESSION_CACHE_SECONDS / 2
    assert (await staff.client.get(url)).status == 200  # the lookup of moments ago
    now[0] += SESSION_CACHE_SECONDS
    assert (await staff.client.get(url)).status == 401


async def test_a_file_bigger_than_the_socket_takes_at_once_arrives_whole(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct: list[tuple[int, int]] = []
    send_now = serving._sendfile_now

    def recording(sock: socket.socket, fd: int, offset: int, count: int) -> int:
        sent = send_now(sock, fd, offset, count)
        direct.append((count, sent))
        return sent

    monkeypatch.setattr(serving, "_sendfile_now", recording)
    key, folder = item_folder(staff)
    # 12 MiB: more than a loopback socket's send buffer (at most 4 MiB), so the first
    # sendfile is partial and the event loop's sendfile finishes the send.
    big = os.urandom(1 << 20) * 12
    (folder / "v0" / "seg00001.ts").write_bytes(big)
    url = signed_base(staff, key) + "/v0/seg00001.ts"
    whole = await staff.client.get(url)
    assert whole.status == 200 and await whole.read() == big
    middle = await staff.client.get(url, headers={"Range": "bytes=1000-9999999"})
    assert middle.status == 206 and await middle.read() == big[1000:10_000_000]
    assert direct[0][0] == len(big) and 0 < direct[0][1] < len(big)  # the loop finished it
    # The connection is still good for the next request (the lengths were right).
    assert await (await staff.client.get(url.replace("seg00001", "seg00000"))).read() == SEGMENT


async def test_a_file_cut_short_ends_the_connection_instead_of_a_hang(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = item_folder(staff)
    url = signed_base(staff, key) + "/v0/seg00000.ts"
    facts = staff.service.responder.facts

    def longer(st: os.stat_result) -> serving.FileFacts:  # as if cut short after its fstat
        found = facts(st)
        return serving.FileFacts(found.size + 100, found.mtime, found.etag, found.last_modified)

    monkeypatch.setattr(staff.service.responder, "facts", longer)
    response = await staff.client.get(url)
    assert int(response.headers["Content-Length"]) == len(SEGMENT) + 100
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), 10)
