"""`python -m api migrate`: bring the database (EBSHED_API_DATABASE_URL) to the newest schema."""

from __future__ import annotations

import argparse

from api.db import head_revision, upgrade
from api.settings import ApiSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args(argv)
    settings = ApiSettings()
    upgrade(settings.database_url)
    print(f"database at revision {head_revision()}")


if __name__ == "__main__":
    main()
