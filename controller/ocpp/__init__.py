"""The shed as an OCPP 1.6J charge point (docs/ocpp.md)."""
