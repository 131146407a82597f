"""Browser libraries from npm (``package.json``, installed by ``npm ci``), served as they are.

The console and the kiosk have no build step: a service that needs a library in the
browser (hls.js for players, html2canvas for kiosk screenshots) mounts its file from
``node_modules`` with :func:`add_npm_route`. The path is looked up on each request, so
a server started before ``npm ci`` serves the file once it is installed.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".map": "application/json"}


def npm_file(package: str, relative: str) -> Path | None:
    """``node_modules/<package>/<relative>``, or None when it is not installed."""
    path = NODE_MODULES / package / relative
    return path if path.is_file() else None


def add_npm_route(
    router: web.UrlDispatcher,
    url: str,
    package: str,
    relative: str,
    *,
    cache_control: str = "no-cache",
) -> None:
    """Serve one file of an npm package at ``url`` (404 naming the fix when missing)."""
    content_type = CONTENT_TYPES.get(Path(relative).suffix, "application/octet-stream")

    async def handler(request: web.Request) -> web.StreamResponse:
        path = npm_file(package, relative)
        if path is None:
            raise web.HTTPNotFound(text=f"{package} is not installed: run `npm ci`")
        return web.FileResponse(
            path, headers={"Content-Type": content_type, "Cache-Control": cache_control}
        )

    router.add_get(url, handler)


__all__ = ["NODE_MODULES", "add_npm_route", "npm_file"]
