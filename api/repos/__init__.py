"""Queries, one module per table or concept. Functions take a `Session` and never commit:
the caller owns the transaction."""
