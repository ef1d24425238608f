"""Request and response bodies, and the records sheds send (pydantic)."""
