"""A real PgBouncer, configured from docs/pgbouncer.ini, in front of a real PostgreSQL."""

from __future__ import annotations

import configparser
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import free_port

PGBOUNCER_INI = Path(__file__).resolve().parent.parent / "docs" / "pgbouncer.ini"


def pgbouncer_binary() -> str:
    """The PgBouncer program; on a laptop without it the test is skipped, in CI it fails."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)
    if found is None:
        reason = "PgBouncer is not installed (apt-get install pgbouncer); .ci/run installs it"
        if os.environ.get("ENERGYCTL_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


class PgBouncer:
    """A real PgBouncer configured from docs/pgbouncer.ini, in front of ``host``:``port``.

    Only what a test must change is changed: where it listens, the server it forwards to,
    trust authentication, and its own log and pid files.
    """

    def __init__(self, host: str, port: int, user: str, password: str | None = None, **overrides):
        binary = pgbouncer_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="energyctl-pgbouncer-"))
        self.port = free_port()
        self.user = user
        target = f"host={host} port={port}" + (f" user={user} password={password}" if password else "")
        config = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
        config.read(PGBOUNCER_INI)
        config["databases"] = {"*": target}
        config["pgbouncer"].update({
            "listen_addr": "127.0.0.1", "listen_port": str(self.port), "unix_socket_dir": "",
            "auth_type": "trust", "auth_file": str(self.workdir / "userlist.txt"), "admin_users": user,
            "logfile": str(self.workdir / "pgbouncer.log"), "pidfile": str(self.workdir / "pgbouncer.pid"),
            **{k: str(v) for k, v in overrides.items()},
        })
        (self.workdir / "userlist.txt").write_text(f'"{user}" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        with ini.open("w") as out:
            config.write(out)
        command = [binary, str(ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; run it as the owner of the server's socket.
            owner = Path(host).stat().st_uid if host.startswith("/") else pwd.getpwnam("nobody").pw_uid
            name = pwd.getpwuid(owner).pw_name
            shutil.chown(self.workdir, name)
            command[1:1] = ["-u", name]
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def reconnect(self) -> None:
        """What an operator does after `energyctl migrate` changed the role settings: let every
        pooled server connection be replaced by one that starts with them."""
        import psycopg

        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as admin:
            admin.execute("RECONNECT")

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited with {self._proc.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"pgbouncer never listened: {self.log()}")
