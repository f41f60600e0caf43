"""The way in: the envelope and CloudEvents parsers, group commit, and the acceptor that
routes each submission and commits it durably before its 202."""
