"""A throwaway PostgreSQL server for tests: Debian's binaries, a fresh cluster in a temp folder,
127.0.0.1 on a free port, always stopped at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` OS user (which
Debian's package creates) and ``initdb``/``pg_ctl`` run through ``runuser``. The cluster trusts
connections on its own Unix socket (the test's superuser side) and asks for a password over TCP,
which is how Dagster connects.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from autonomath_pipelines_tests.e2e.processes import free_port
from autonomath_pipelines_tests.system import ensure_debian_packages

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
OS_USER = "postgres"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def _installed_bindirs() -> list[Path]:
    found = [
        p.parent for p in PG_ROOT.glob("*/bin/initdb") if all((p.parent / name).exists() for name in SERVER_BINARIES)
    ]
    return sorted(found, key=lambda d: _version_key(d.parent.name))


def _debian_default_version() -> str:
    """The major version Debian's ``postgresql`` package installs (15 on bookworm, 17 on trixie)."""
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "depends", "postgresql"], capture_output=True, text=True).stdout
        match = re.search(r"Depends: postgresql-(\d+)\b", out)
        if match:
            return match.group(1)
        if attempt == 0 and os.geteuid() == 0:  # no package lists yet on a fresh machine
            subprocess.run(
                ["apt-get", "update", "-qq"],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                capture_output=True,
                timeout=600,
            )
    raise RuntimeError(
        "PostgreSQL is not installed and apt-cache does not know Debian's `postgresql` package; "
        "install it with `apt-get install -y postgresql` as root"
    )


def postgres_bindir() -> Path:
    """``/usr/lib/postgresql/<version>/bin`` with the server binaries, installing Debian's
    ``postgresql`` when no version is there (the newest installed version wins)."""
    installed = _installed_bindirs()
    version = installed[-1].parent.name if installed else _debian_default_version()
    bindir = PG_ROOT / version / "bin"
    ensure_debian_packages(["postgresql"], provides=[str(bindir / name) for name in SERVER_BINARIES])
    return bindir


@dataclass
class Database:
    """A database and its owner, as Dagster's ``postgres_db`` config (and DAGSTER_PG_*) names them."""

    host: str
    port: int
    name: str
    user: str
    password: str

    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.name,
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self):
        """A psycopg2 connection over TCP with the password, the way Dagster connects (autocommit)."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host, port=self.port, dbname=self.name, user=self.user, password=self.password, connect_timeout=10
        )
        conn.autocommit = True
        return conn


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        as_owner = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_owner, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed (exit {done.returncode}): {done.stderr[-2000:]}{self.log_tail()}"
            )
        return done

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return f"\n--- {self.log_path}\n{self.log_path.read_text(errors='replace')[-2000:]}"

    def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, OS_USER, OS_USER)
            shutil.chown(self.socket_dir, OS_USER, OS_USER)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        # A test server: durability off (fsync, synchronous commit) for speed.
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL of its postmaster); never raises."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        for mode in ("fast", "immediate"):
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "30",
                    "stop",
                    timeout=60,
                )
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            time.sleep(1)
        except (OSError, ValueError, IndexError):
            pass

    def superuser_connection(self, dbname: str = "postgres"):
        """The superuser over the Unix socket (trusted), autocommit."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), port=self.port, dbname=dbname, user="postgres")
        conn.autocommit = True
        return conn

    def create_database(self, name: str, user: str | None = None) -> Database:
        """A new database owned by a new login role with a random password."""
        from psycopg2 import sql

        user = user or f"{name}_owner"
        password = secrets.token_urlsafe(16)
        conn = self.superuser_connection()
        try:
            cur = conn.cursor()
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), (password,))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))
        finally:
            conn.close()
        return Database(self.host, self.port, name, user, password)


def start_postgres_server() -> PostgresServer:
    """Install PostgreSQL if missing, and start a fresh cluster in a new temp folder (not under
    pytest's tmp folders: those are private to root, and the server runs as ``postgres``)."""
    bindir = postgres_bindir()
    server = PostgresServer(bindir, Path(tempfile.mkdtemp(prefix="autonomath-pg-")))
    try:
        server.start()
    except BaseException:
        discard(server)
        raise
    return server


def discard(server: PostgresServer) -> None:
    """Stop the server and delete its folder."""
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
