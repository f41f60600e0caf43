"""ingestd's version, in a module of its own so the lowest layers can name it."""

__version__ = "0.1.0"
