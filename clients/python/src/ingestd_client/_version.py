"""The distribution's version, sent in User-Agent; kept in step with pyproject.toml."""

__version__ = "0.2.0"
