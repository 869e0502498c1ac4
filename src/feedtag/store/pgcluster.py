"""A throwaway PostgreSQL cluster on 127.0.0.1, for the store tests and the benchmark.

``initdb`` refuses to run as root, so as root every server command runs as the
``postgres`` user (``runuser``) in a folder made with :func:`tempfile.mkdtemp` and chowned
to it. Test-only settings (``fsync=off``, ``synchronous_commit=off``) make it fast; never
use this for data that matters.

>>> find_pg_bin() is None or (find_pg_bin() / "initdb").exists()
True
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine, text

from feedtag.errors import StoreError

#: Debian installs each major version's binaries here; the newest one present is used
PG_BIN_GLOB: Final = "/usr/lib/postgresql/*/bin"
COMMAND_TIMEOUT_S: Final = 60
SUPERUSER: Final = "postgres"


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is absent."""
    candidates = sorted(
        (Path(p) for p in glob.glob(PG_BIN_GLOB) if (Path(p) / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """``start()``, ``stop()``, ``url(db)``, ``create_database(name)``, ``destroy()``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="feedtag-pg-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, SUPERUSER, SUPERUSER)
        self._run("initdb", "--no-sync", "-A", "trust", "-U", SUPERUSER, "-D", str(self.folder))

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S
        )
        if done.returncode != 0:
            raise StoreError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log_file = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.folder), "-l", log_file, "-w", "-o", options, "start")

    def stop(self) -> None:
        """Stop at once, cutting every connection (an outage, as clients see it)."""
        self._run("pg_ctl", "-D", str(self.folder), "-w", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin_engine(self) -> Engine:
        return create_engine(self.url(), isolation_level="AUTOCOMMIT")

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a plain identifier) and return its URL."""
        if not name.isidentifier():
            raise ValueError(f"expected a plain identifier, got {name!r}")
        engine = self.admin_engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(StoreError):  # already stopped
            self._run("pg_ctl", "-D", str(self.folder), "-w", "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
