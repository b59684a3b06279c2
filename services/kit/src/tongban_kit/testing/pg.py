"""PostgreSQL for tests: a server from TONGBAN_TEST_DATABASE_URL or testcontainers; a database per module."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url


@dataclass
class PgServer:
    """A reachable PostgreSQL server and the database to connect to for admin work."""

    admin_url: str  # plain postgresql:// URL

    @property
    def prefix(self) -> str:
        """Prefix of databases this run creates (the admin database's name)."""
        return make_url(self.admin_url).database or "tongban_test"

    def url_for(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        """A SQLAlchemy URL for one database on this server."""
        url = make_url(self.admin_url).set(drivername=driver, database=database)
        return url.render_as_string(hide_password=False)

    def _dsn(self) -> str:
        return self.url_for(self.prefix, "postgresql")

    async def create_database(self) -> str:
        """Create an empty database with a unique name; returns the name."""
        import asyncpg

        name = f"{self.prefix}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(self._dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        """Drop a database this run created, disconnecting its sessions."""
        import asyncpg

        conn = await asyncpg.connect(self._dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextmanager
def find_pg_server() -> Iterator[PgServer | None]:
    """The configured server, else a testcontainers one, else None."""
    env = os.environ.get("TONGBAN_TEST_DATABASE_URL")
    if env:
        url = make_url(env).set(drivername="postgresql")
        yield PgServer(url.render_as_string(hide_password=False))
        return
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        yield None
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", dbname="tongban_test") as pg:
        yield PgServer(pg.get_connection_url().replace("+psycopg2", ""))
