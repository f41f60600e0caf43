"""Subject, addresses and bodies rendered from the event with a sandboxed Jinja2.

A template cannot reach Python internals (sandbox), an unknown variable is an error
rather than an empty string, and a header that renders with CR or LF is refused: it
would let event data inject headers.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ingestd.errors import ConfigError
from ingestd.model import Event

_text = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_html = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True)


class RenderError(ValueError):
    """The event cannot be rendered into this message (retrying cannot help)."""


def compile_template(source: str, *, html: bool = False, field: str) -> jinja2.Template:
    try:
        return (_html if html else _text).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template {field!r}: {exc}") from exc


def context(event: Event) -> dict[str, Any]:
    return {
        "event": {
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "occurred_at": event.occurred_at,
            "actor_id": event.actor_id,
            "subject": event.subject,
            "data": event.data,
        },
        "data": event.data,
    }


def render(template: jinja2.Template, ctx: dict[str, Any], *, field: str) -> str:
    try:
        return template.render(ctx)
    except jinja2.TemplateError as exc:
        raise RenderError(f"{field}: {exc}") from exc


def render_header(template: jinja2.Template, ctx: dict[str, Any], *, field: str) -> str:
    value = render(template, ctx, field=field).strip()
    if "\r" in value or "\n" in value:
        raise RenderError(f"{field}: the rendered header contains CR/LF; refused, not sent")
    if not value:
        raise RenderError(f"{field}: rendered empty")
    return value


def addresses(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]
