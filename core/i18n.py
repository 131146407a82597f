"""Chinese and English for every page: message catalogs and language choice."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
COOKIE = "lang"
LANG = web.RequestKey("lang", str)

CORE_MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app.name": "unicomm",
        "app.tagline": "Unified communications of the city network",
        "nav.home": "Overview",
        "nav.logout": "Log out",
        "nav.language": "中文",
        "login.title": "Sign in",
        "login.username": "Username",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.failed": "Wrong username or password.",
        "login.locked": "Too many failed logins: the account is locked for a while.",
        "home.title": "Services",
        "home.signed_in_as": "Signed in as",
        "home.open": "Open",
        "role.admin": "Administrator",
        "role.operator": "Operator",
        "role.duty_officer": "Duty officer",
        "role.staff": "Staff",
        "error.forbidden": "Your role may not open this page.",
        "common.save": "Save",
        "common.add": "Add",
        "common.delete": "Delete",
        "common.edit": "Edit",
        "common.name": "Name",
        "common.none": "Nothing here yet.",
    },
    "zh": {
        "app.name": "unicomm 统一通信",
        "app.tagline": "城市电子政务网统一通信平台",
        "nav.home": "总览",
        "nav.logout": "退出登录",
        "nav.language": "English",
        "login.title": "登录",
        "login.username": "用户名",
        "login.password": "密码",
        "login.submit": "登录",
        "login.failed": "用户名或密码错误。",
        "login.locked": "登录失败次数过多，账号已暂时锁定。",
        "home.title": "业务",
        "home.signed_in_as": "当前用户",
        "home.open": "进入",
        "role.admin": "管理员",
        "role.operator": "话务员",
        "role.duty_officer": "值班员",
        "role.staff": "工作人员",
        "error.forbidden": "您的角色无权访问此页面。",
        "common.save": "保存",
        "common.add": "添加",
        "common.delete": "删除",
        "common.edit": "编辑",
        "common.name": "名称",
        "common.none": "暂无内容。",
    },
}


class Translations:
    def __init__(self) -> None:
        self._catalogs: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
        self.add(CORE_MESSAGES)

    def add(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        """Merge a service's catalog; both languages must define the same keys."""
        keys = {lang: set(messages.get(lang, {})) for lang in LANGUAGES}
        if keys["zh"] != keys["en"]:
            missing = sorted(keys["zh"] ^ keys["en"])
            raise ValueError(f"message catalog is not complete in zh and en: {missing[:5]}")
        for lang in LANGUAGES:
            self._catalogs[lang].update(messages[lang])

    def get(self, lang: str, key: str) -> str:
        return self._catalogs.get(lang, {}).get(key) or self._catalogs["en"].get(key, key)

    def pick(self, lang: str, text: Mapping[str, str]) -> str:
        """Choose from a ``{"zh": ..., "en": ...}`` value, falling back to English."""
        return text.get(lang) or text.get("en") or next(iter(text.values()), "")


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    if accept_language:
        ranked: list[tuple[float, str]] = []
        for part in accept_language.split(","):
            tag, _, params = part.strip().partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            ranked.append((quality, tag.strip().lower()[:2]))
        for _, lang in sorted(ranked, key=lambda item: -item[0]):
            if lang in LANGUAGES:
                return lang
    return DEFAULT_LANGUAGE
