"""Message templates with ``{{variable}}`` placeholders (sans-I/O)."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(ValueError):
    """A template that cannot be filled; names the missing variables."""


def variables_of(body: str) -> list[str]:
    names: list[str] = []
    for match in PLACEHOLDER.finditer(body):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def render(body: str, values: dict[str, str]) -> str:
    missing = [name for name in variables_of(body) if not values.get(name, "").strip()]
    if missing:
        raise TemplateError(f"missing values for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)].strip(), body)
