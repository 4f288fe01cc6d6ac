"""The durable store: one SQLite file, its schema, and its single writer.

Opens the database (WAL, synchronous=FULL, foreign keys), creates or migrates
the schema by version, and runs every write of the server on one writer
thread that commits several waiting writes together (group commit), each in
a savepoint of its own so one failing write never undoes another. Owns no
business rules: the modules that own each table write its rows.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

log = logging.getLogger(__name__)

# Each entry moves the schema to version N from the entry before it; they
# run in order of N. Never edit a released entry: add a new one.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);

    CREATE TABLE forums (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        path TEXT NOT NULL,
        language TEXT NOT NULL,
        policy TEXT NOT NULL,
        charter INTEGER NOT NULL DEFAULT 1,
        digest TEXT NOT NULL DEFAULT 'weekly',
        subscription TEXT NOT NULL DEFAULT 'open',
        content TEXT NOT NULL DEFAULT 'html',
        description TEXT NOT NULL DEFAULT '',
        archive_url TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE TABLE facilitators (
        forum_id INTEGER NOT NULL REFERENCES forums(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        PRIMARY KEY (forum_id, address)
    );
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        forum_id INTEGER NOT NULL REFERENCES forums(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL,
        region TEXT NOT NULL DEFAULT '',
        mode TEXT NOT NULL DEFAULT 'each',
        profile TEXT NOT NULL DEFAULT 'email',
        charter_accepted_at TEXT,
        joined_at TEXT NOT NULL,
        posts INTEGER NOT NULL DEFAULT 0,
        bounces INTEGER NOT NULL DEFAULT 0,
        UNIQUE (forum_id, address)
    );
    CREATE INDEX members_fanout ON members (forum_id, mode, profile, domain);

    -- Every accepted message, raw bytes kept once.
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_tos TEXT NOT NULL,
        raw BLOB NOT NULL,
        size INTEGER NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'received',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        defects TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX messages_status ON messages (status, id);

    -- A message addressed to a forum: its way through policy and distribution.
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id),
        forum_id INTEGER NOT NULL REFERENCES forums(id),
        header_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        distributed_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        UNIQUE (forum_id, header_id)
    );
    CREATE INDEX posts_status ON posts (status, id);

    CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL UNIQUE REFERENCES posts(id),
        forum_id INTEGER NOT NULL REFERENCES forums(id),
        reason TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'held',
        created_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        decided_via TEXT,
        decision_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX holds_status ON holds (forum_id, status);

    -- Single-use secrets: subscription confirmations, decisions. Stored hashed.
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        purpose TEXT NOT NULL,
        forum_id INTEGER REFERENCES forums(id) ON DELETE CASCADE,
        address TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );

    -- Rendered outgoing messages, shared by all their recipients.
    CREATE TABLE bodies (
        id INTEGER PRIMARY KEY,
        ref TEXT NOT NULL,
        raw BLOB NOT NULL,
        forum_id INTEGER,
        personal INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE INDEX bodies_ref ON bodies (ref);

    -- The outbound queue: one row per (logical send, recipient).
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        ref TEXT NOT NULL,
        body_id INTEGER NOT NULL REFERENCES bodies(id),
        recipient TEXT NOT NULL,
        domain TEXT NOT NULL,
        sender TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        sent_at REAL,
        last_error TEXT NOT NULL DEFAULT '',
        UNIQUE (ref, recipient)
    );
    -- Partial: a row leaves the index when it is claimed, and 'sent' rows never enter it.
    CREATE INDEX deliveries_due ON deliveries (next_at, domain, body_id)
        WHERE status IN ('queued', 'deferred');

    CREATE TABLE bounces (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        recipient TEXT NOT NULL,
        delivery_id INTEGER,
        forum_id INTEGER,
        code INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX bounces_recipient ON bounces (recipient);

    -- Who did what to whom: subscriptions, charter acceptances, removals.
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        forum_id INTEGER,
        kind TEXT NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: moderation (hold rules, senders' standing); 4: relays; 5: digests' own
    # tables. 3: publications, what the hub sends out on a schedule and relays
    # carry; written by digests/, read by relays/. `payload` is the structured
    # publication as JSON (its shape is documented in digests/publications.py).
    3: """
    CREATE TABLE publications (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        forum_id INTEGER REFERENCES forums(id),
        volume INTEGER NOT NULL DEFAULT 1,
        number INTEGER NOT NULL,
        title TEXT NOT NULL,
        language TEXT NOT NULL,
        period_start TEXT,
        period_end TEXT,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'built',
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX publications_kind ON publications (kind, forum_id, number);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


class StoreError(Exception):
    """The database cannot be opened or migrated."""


def connect(path: Path, busy_timeout: float = 30) -> sqlite_utils.Database:
    """Open the site's database with the settings every connection needs;
    a write waits up to `busy_timeout` seconds for another process's lock."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    with db.ensure_autocommit_on():
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
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
    for version in sorted(v for v in MIGRATIONS if v > found):
        with db.atomic():
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       [str(version)])
        log.info("database migrated to schema version %d", version)
    return found


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


class Writer:
    """The store's one writer thread, with group commit.

    Work is a function `fn(db, *args)`; it runs inside a savepoint of a
    transaction that may hold other waiting work too, and its future is
    resolved only after COMMIT returned (synchronous=FULL: on disk).
    """

    def __init__(self, path: Path, max_group: int = 64, busy_timeout: float = 30):
        self.path = path
        self.busy_timeout = busy_timeout
        self.max_group = max_group
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="listserv-writer", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread.start()
        self._ready.wait()
        if self._error:
            raise self._error

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(db, *args)` on the writer thread; return its result once committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, args, loop, future))
        return await future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The same as write(), for threads that are not running an event loop."""
        done = threading.Event()
        box: dict[str, Any] = {}
        self._jobs.put((fn, args, None, (done, box)))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            db = connect(self.path, self.busy_timeout)
        except BaseException as error:  # reported to the constructor
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        while True:
            first = self._jobs.get()
            if first is None:
                break
            group = [first]
            while len(group) < self.max_group:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)
                    break
                group.append(job)
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
