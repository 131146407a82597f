"""The console shell: server-rendered pages in Chinese and English.

Services register their pages here; the shell gives them the layout,
navigation, language switch and the CSRF token their forms must carry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from core.auth import Identity, identity_of
from core.i18n import LANG, Translations
from core.models import Role

CORE_TEMPLATES = Path(__file__).parent / "templates"

LOGIN_CSRF = web.RequestKey("login_csrf", str)

PageHandler = Callable[[web.Request], Awaitable[Mapping[str, Any] | web.StreamResponse]]


class FormRefused(ValueError):
    """A console form refused: the message's i18n key and what to fill into it."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class ConsolePage:
    key: str
    title: Mapping[str, str]
    path: str
    template: str
    roles: tuple[Role, ...] = ()
    summary: Mapping[str, str] = field(default_factory=dict)
    # A sub-page of a service (its costs, its features) names the service's page
    # key: it is listed under that service, not beside the five services.
    parent: str | None = None

    @property
    def section(self) -> str:
        return self.parent or self.key


class Console:
    def __init__(self, translations: Translations) -> None:
        self.translations = translations
        self.pages: list[ConsolePage] = []
        self._loaders: dict[str, jinja2.BaseLoader] = {}
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(CORE_TEMPLATES), jinja2.PrefixLoader(self._loaders)]
            ),
            autoescape=jinja2.select_autoescape(default=True),
            enable_async=True,
            undefined=jinja2.StrictUndefined,
        )

    def add_templates(self, prefix: str, folder: Path) -> None:
        """Make ``folder``'s templates available as ``prefix/name.html``."""
        self._loaders[prefix] = jinja2.FileSystemLoader(folder)

    def add_page(
        self,
        router: web.UrlDispatcher,
        page: ConsolePage,
        handler: PageHandler,
    ) -> None:
        self.pages.append(page)

        async def view(request: web.Request) -> web.StreamResponse:
            identity = identity_of(request)
            if identity is None or identity.role is None:
                raise web.HTTPFound(f"/login?next={request.path_qs}")
            if page.roles and not identity.has_role(*page.roles):
                return await self.render(request, "forbidden.html", {}, status=403)
            result = await handler(request)
            if isinstance(result, web.StreamResponse):
                return result
            return await self.render(request, page.template, {"page": page, **result})

        router.add_get(page.path, view)

    def visible_pages(self, identity: Identity | None) -> list[ConsolePage]:
        if identity is None:
            return []
        return [p for p in self.pages if not p.roles or identity.has_role(*p.roles)]

    def sub_pages(self, identity: Identity | None, section: str) -> list[ConsolePage]:
        """The pages of one service, its main page first, for the service's own tabs."""
        pages = [p for p in self.visible_pages(identity) if p.section == section]
        return sorted(pages, key=lambda p: p.parent is not None)

    async def render(
        self,
        request: web.Request,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
    ) -> web.Response:
        lang = request[LANG]
        identity = identity_of(request)

        def t(key: str) -> str:
            return self.translations.get(lang, key)

        def pick(text: Mapping[str, str]) -> str:
            return self.translations.pick(lang, text)

        values: dict[str, Any] = {
            "t": t,
            "pick": pick,
            "lang": lang,
            "identity": identity,
            "csrf_token": identity.csrf_token if identity else request.get(LOGIN_CSRF, ""),
            "nav": [p for p in self.visible_pages(identity) if p.parent is None],
            "sub_pages": self.sub_pages,
            "request_path": request.path_qs,
            "page": None,
        }
        values.update(context)
        html = await self.env.get_template(template).render_async(values)
        return web.Response(text=html, content_type="text/html", status=status)
