"""What the API does, independent of HTTP: registration, the uplink, commands, hooks."""
