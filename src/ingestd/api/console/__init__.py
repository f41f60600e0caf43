"""The operators' console at /console: server-rendered pages (Jinja2) over the store and
the admin service, one small script for live updates; nothing fetched at run time."""

from ingestd.api.console.app import Console

__all__ = ["Console"]
