"""A PostgreSQL database a benchmark creates, migrates and drops: the figures come from the production setup."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def scratch_database(label: str, *, debug: bool = True) -> Iterator[None]:
    """Create ``bench_<label>_<pid>`` on the PostgreSQL of ``DATABASE_URL``, point Django at it (debug settings
    unless ``debug`` is False: then the caller sets SECRET_KEY), migrate it, and drop it afterwards whatever
    happens. Exits with a message without PostgreSQL."""
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not server.startswith("postgres"):
        sys.exit(f"bench/{label} needs PostgreSQL: set DATABASE_URL to a server it may create a database on")
    import psycopg

    name = f"bench_{label}_{os.getpid()}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        os.environ["DATABASE_URL"] = with_database(server, name)
        os.environ["DJANGO_SETTINGS_MODULE"] = "provenance.settings"
        os.environ["PROVENANCE_DEBUG"] = "1" if debug else "0"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield
        from django.db import connections

        connections.close_all()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
