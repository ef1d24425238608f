"""Edge controller of an e-bike charging shed."""

__version__ = "0.1.0"
