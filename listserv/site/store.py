"""The durable store: one SQLite file, its schema, and its single writer.

Opens the database (WAL, synchronous=FULL, foreign keys), creates or migrates
the schema by version (the numbered SQL files in `migrations/`), and runs every write of the server on one writer
thread that commits several waiting writes together (group commit), each in
a savepoint of its own so one failing write never undoes another. Owns no
business rules: the modules that own each table write its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The database cannot be opened or migrated."""


# The schema's migrations are numbered SQL files beside this module
# (migrations/NNNN-what.sql). Each moves the schema to version N from the
# ones before it; they run in order of N, each in one transaction. Never
# edit a released file: add a new one.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def load_migrations(folder: Path = MIGRATIONS_DIR) -> dict[int, str]:
    """The migration scripts by number, read from `folder`."""
    found: dict[int, str] = {}
    for path in sorted(folder.glob("*.sql")):
        number = int(path.name.split("-", 1)[0])
        if number in found:
            raise StoreError(f"{path}: a second migration numbered {number}")
        found[number] = path.read_text(encoding="utf-8")
    if not found:
        raise StoreError(f"no migrations found in {folder}; the installation is incomplete")
    return found


MIGRATIONS: dict[int, str] = load_migrations()
SCHEMA_VERSION = max(MIGRATIONS)


class Database(sqlite_utils.Database):
    """sqlite-utils' Database whose outermost `atomic()` takes the write lock at
    BEGIN. A deferred transaction that reads and then writes fails at once
    with 'database is locked' when another process committed in between
    (WAL cannot upgrade a stale snapshot); BEGIN IMMEDIATE waits its turn."""

    @contextlib.contextmanager
    def atomic(self):
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.rollback()
            raise


def connect(path: Path, busy_timeout: float = 30) -> sqlite_utils.Database:
    """Open the site's database with the settings every connection needs;
    a write waits up to `busy_timeout` seconds for another process's lock."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    db = Database(conn, execute_plugins=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    with db.ensure_autocommit_on():
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")  # the writer sets its own
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {found}, newer than this "
                         f"listserv understands ({SCHEMA_VERSION}); upgrade listserv")
    applied = applied_migrations(db, found)
    if applied:
        with db.atomic():  # from now on each migration is recorded by its number
            db.conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 'applied')",
                                [(f"migration:{v}",) for v in applied])
    for version in sorted(set(MIGRATIONS) - applied):
        with db.atomic():
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, 'applied')",
                       [f"migration:{version}"])
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       [str(max(version, schema_version(db)))])
        log.info("database migrated: applied migration %d", version)
    return found


def applied_migrations(db: sqlite_utils.Database, found: int) -> set[int]:
    """The migrations this database has had, each recorded by its number, so
    one added below the newest (numbers need not come in order) still runs."""
    if found == 0:
        return set()
    rows = db.execute("SELECT key FROM meta WHERE key LIKE 'migration:%'").fetchall()
    if rows:
        return {int(key.split(":")[1]) for (key,) in rows}
    return {v for v in MIGRATIONS if v <= found}  # recorded by version alone


def _statements(script: str) -> list[str]:
    """Split a migration script on statement ends (our scripts have no triggers)."""
    parts, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            parts.append("\n".join(current).strip())
            current = []
    return [part for part in parts if part.strip(" ;\n")]


# Page caches fill as the database grows and then stay resident, so each is
# bounded. Readers look up little at a time (the OS keeps the file's pages
# anyway); the writer, which walks indexes on every fan-out and claim, more.
READER_CACHE_KIB = 512
WRITER_CACHE_KIB = 8 * 1024  # the writer's page cache, bounded: it fills over hours and stays resident


def _name_thread(name: str) -> None:
    """Give the calling thread `name` where the system shows it (top -H, ps -L):
    the store's threads are told apart from the event loop when one is busy."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass  # not Linux


class Writer:
    """The store's one writer thread, with group commit.

    Work is a function `fn(db, *args)`; it runs inside a savepoint of a
    transaction that may hold other waiting work too, and its future is
    resolved only after COMMIT returned (synchronous=FULL: on disk).

    The write-ahead log is copied back into the database file by a thread of
    its own (a PASSIVE checkpoint after commits, at most a few a second)
    rather than inside whichever COMMIT crosses SQLite's threshold: the
    copying and its fsync then run beside the writer instead of holding up
    the commit that a client's 250 or a delivery claim is waiting for.
    """

    CHECKPOINT_PAUSE = 0.25  # seconds between checkpoints, at the most

    def __init__(self, path: Path, max_group: int = 64, busy_timeout: float = 30):
        self.path = path
        self.busy_timeout = busy_timeout
        self.max_group = max_group
        # (priority, order, job): intake's commits, the delivery engine's claims
        # and distribution, one post per job (priority 0), go before the rest of
        # the pipeline's work: a burst of mail is accepted and its copies queued
        # as fast as it arrives, and connections never wait for archiving.
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="listserv-writer", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._committed = threading.Event()
        self._pause = threading.Event()  # set only to end the checkpointer's pause early
        self._closing = False
        self._checkpointer = threading.Thread(target=self._checkpoint, daemon=True,
                                              name="listserv-checkpoint")
        self._thread.start()
        self._ready.wait()
        if self._error:
            raise self._error
        self._checkpointer.start()

    def _put(self, job, priority: int) -> None:
        self._jobs.put((priority, next(self._order), job))

    async def write(self, fn: Callable[..., Any], *args: Any, priority: int = 1) -> Any:
        """Run `fn(db, *args)` on the writer thread; return its result once committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((fn, args, loop, future), priority)
        return await future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The same as write(), for threads that are not running an event loop."""
        done = threading.Event()
        box: dict[str, Any] = {}
        self._put((fn, args, None, (done, box)), 1)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def close(self) -> None:
        self._put(None, 9)
        self._thread.join(timeout=30)
        self._closing = True
        self._committed.set()
        self._pause.set()  # a checkpointer between checkpoints stops now, not after its pause
        self._checkpointer.join(timeout=30)

    def _checkpoint(self) -> None:
        _name_thread("ls-checkpoint")
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                               check_same_thread=False)
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        try:
            while True:
                self._committed.wait()
                self._committed.clear()
                try:  # PASSIVE: never waits for the writer nor blocks it
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # the next commit brings another try
                    log.warning("checkpoint of the write-ahead log failed: %s", error)
                if self._closing:
                    break
                # A timed wait, not time.sleep (which fails under libfaketime with
                # the monotonic clock left real, as the clock-step tests run serve).
                self._pause.wait(self.CHECKPOINT_PAUSE)
                if self._closing:
                    break
        finally:
            conn.close()

    def _run(self) -> None:
        _name_thread("ls-writer")
        try:
            db = connect(self.path, self.busy_timeout)
        except BaseException as error:  # reported to the constructor
            self._error = error
            self._ready.set()
            return
        db.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
        db.conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        self._ready.set()
        while True:
            priority, _, first = self._jobs.get()
            if first is None:
                break
            group = [first]
            while len(group) < self.max_group:  # waiting jobs of the same priority
                try:
                    entry = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if entry[0] != priority or entry[2] is None:
                    self._jobs.put(entry)
                    break
                group.append(entry[2])
            self._run_group(db, group)
        db.conn.close()

    def _run_group(self, db: sqlite_utils.Database, group: list) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for fn, args, _loop, _future in group:
                db.execute("SAVEPOINT job")
                try:
                    result = fn(db, *args)
                except BaseException as error:  # the job's own failure, reported to it
                    db.execute("ROLLBACK TO SAVEPOINT job")
                    db.execute("RELEASE SAVEPOINT job")
                    outcomes.append((False, error))
                else:
                    db.execute("RELEASE SAVEPOINT job")
                    outcomes.append((True, result))
            db.execute("COMMIT")
            self._committed.set()
        except BaseException as error:  # the commit itself failed: nothing was written
            log.error("store commit failed: %s", error)
            if db.conn.in_transaction:
                db.conn.rollback()
            outcomes = [(False, error)] * len(group)
        for (ok, value), (_fn, _args, loop, future) in zip(outcomes, group):
            _resolve(loop, future, ok, value)


def _resolve(loop, future, ok: bool, value: Any) -> None:
    if loop is None:
        done, box = future
        box["result" if ok else "error"] = value
        done.set()
        return

    def settle() -> None:
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while the write ran; the write stands
        pass
