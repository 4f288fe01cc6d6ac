"""A site folder: its settings, its database, its secret and its serve lock.

Reads `listserv.toml` and `data/`; creates `data/` files it needs (database,
secret, lock). Opens nothing until first asked, so `listserv --help` works in
any folder. Will not create a site: that is `listserv init`.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from functools import cached_property
from pathlib import Path

import sqlite_utils

from listserv.errors import ConfigError, ListservError, SiteLocked
from listserv.site import store
from listserv.site.settings import Settings, load_settings


class Site:
    def __init__(self, folder: Path | str, busy_timeout: float = 30):
        self.folder = Path(folder)
        self.busy_timeout = busy_timeout  # how long a write waits for another process
        self.writer: store.Writer | None = None
        self._lock_file = None

    # -- places --------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.folder / "listserv.toml"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def db_path(self) -> Path:
        return self.data / "listserv.db"

    @property
    def outbox(self) -> Path:
        return self.data / "outbox"

    @property
    def templates(self) -> Path:
        return self.folder / "templates"

    @property
    def active_templates(self) -> Path:
        """The checked copies of the site's templates that mail is rendered from
        (kept by digests/templating.py; a broken edit in templates/ never
        reaches them)."""
        return self.data / "templates"

    @property
    def charter(self) -> Path:
        return self.folder / "charter"

    # -- contents ------------------------------------------------------------
    def require(self) -> None:
        """Fail with a clear line when the folder is not a site."""
        if not self.config_path.is_file():
            raise ConfigError(f"{self.folder} is not a listserv site (no listserv.toml); "
                              f"create one with 'listserv init {self.folder}' or pass --site")

    @cached_property
    def settings(self) -> Settings:
        self.require()
        return load_settings(self.config_path)

    @cached_property
    def db(self) -> sqlite_utils.Database:
        """A connection for this thread's reads, and writes when no writer runs."""
        self.require()
        self.data.mkdir(parents=True, exist_ok=True)
        try:
            if not self.db_path.exists():  # members' addresses: readable by the site's user only
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as error:
            raise ListservError(f"{self.db_path}: cannot create the database: {error}") from None
        try:
            db = store.connect(self.db_path)
            store.migrate(db)
        except store.StoreError as error:
            raise ListservError(f"{self.db_path}: {error}") from None
        except Exception as error:  # sqlite3 errors: locked, corrupt, unreadable
            raise ListservError(f"{self.db_path}: cannot open the database: {error}") from None
        return db

    @cached_property
    def secret(self) -> bytes:
        """The site's own key for signed links (one-click unsubscribe)."""
        path = self.data / "secret"
        if not path.exists():
            self.data.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())

    @cached_property
    def dmarc(self):
        """Posters' DMARC policies, cached for their TTL while the site is open."""
        from listserv.delivery.dmarc import Policies
        return Policies(self.settings.dns)

    # -- writing -------------------------------------------------------------
    def start_writer(self) -> None:
        self.db  # migrate before the writer opens its own connection
        self.writer = store.Writer(self.db_path, busy_timeout=self.busy_timeout)

    def stop_writer(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None

    async def write(self, fn, *args, priority: int = 1):
        """Run `fn(db, *args)` in one committed transaction on the writer thread;
        priority 0 (intake, delivery claims, distribution one post at a time) goes
        before waiting work of priority 1."""
        assert self.writer is not None, "start_writer() first"
        return await self.writer.write(fn, *args, priority=priority)

    def write_now(self, fn, *args):
        """The same from synchronous code (the CLI, worker threads)."""
        if self.writer is not None:
            return self.writer.call(fn, *args)
        with self.db.atomic():
            return fn(self.db, *args)

    # -- the serve lock --------------------------------------------------------
    def lock(self) -> None:
        """Take the site for one `serve`; a second one gets SiteLocked."""
        self.data.mkdir(parents=True, exist_ok=True)
        handle = open(self.data / "serve.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "another process"
            handle.close()
            raise SiteLocked(f"{self.folder} is already served by process {pid}; "
                             f"stop it first (one 'listserv serve' per site)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None
