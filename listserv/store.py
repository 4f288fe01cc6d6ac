"""The durable store: one SQLite file, its schema, and its single writer.

Opens the database (WAL, synchronous=FULL, foreign keys), creates or migrates
the schema by version, and runs every write of the server on one writer
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
import time
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
    # 2: moderation (written by moderation/): each forum's hold rules (see
    # moderation/rules.py), what became of each hold's notice, reminder and
    # escalation, the decision word used, a digest of each post's text (to
    # see the same text coming round again), senders' standing per forum
    # (accept: never held for who they are; ban: their posts are discarded),
    # and confirmed subscription requests waiting for a facilitator.
    2: """
    ALTER TABLE forums ADD COLUMN non_member TEXT NOT NULL DEFAULT 'hold';
    ALTER TABLE forums ADD COLUMN probation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE forums ADD COLUMN max_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE forums ADD COLUMN hold_types TEXT NOT NULL DEFAULT '';
    ALTER TABLE forums ADD COLUMN hold_words TEXT NOT NULL DEFAULT '';
    ALTER TABLE forums ADD COLUMN hold_loops INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE forums ADD COLUMN daily_limit INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE forums ADD COLUMN emergency INTEGER NOT NULL DEFAULT 0;

    ALTER TABLE holds ADD COLUMN decision TEXT;
    ALTER TABLE holds ADD COLUMN noticed_at TEXT;
    ALTER TABLE holds ADD COLUMN reminded_at TEXT;
    ALTER TABLE holds ADD COLUMN escalated_at TEXT;
    CREATE INDEX holds_age ON holds (status, created_at);
    CREATE INDEX posts_sender ON posts (forum_id, sender, created_at);
    ALTER TABLE posts ADD COLUMN text_digest TEXT;
    CREATE INDEX tokens_purpose ON tokens (purpose, used_at);

    CREATE TABLE senders (
        forum_id INTEGER NOT NULL REFERENCES forums(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        standing TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_via TEXT NOT NULL,
        set_at TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (forum_id, address)
    );

    CREATE TABLE subscription_requests (
        id INTEGER PRIMARY KEY,
        token_id INTEGER NOT NULL UNIQUE,
        forum_id INTEGER NOT NULL REFERENCES forums(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'waiting',
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        noticed_at TEXT,
        reminded_at TEXT,
        decision TEXT,
        decided_by TEXT,
        decided_via TEXT,
        decided_at TEXT,
        decision_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX subscription_requests_status ON subscription_requests (forum_id, status);
    """,
    # 4: relays; 5: digests' own tables.
    # 3: publications, what the hub sends out on a schedule and relays
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
    # 4: relays (written by relays/). On the hub: the relays it serves and one
    # row per (publication, relay) send with the relay's acknowledgements. On
    # both: federation messages seen (replay guard) and refused. On a relay:
    # publications received, its own recipients (postal addresses never leave
    # it), translation segments, sheets and memory, link references for
    # `get REF`, postal batches, and upstream mail sent to the hub.
    4: """
    CREATE TABLE relays (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        secret_file TEXT NOT NULL,
        languages TEXT NOT NULL DEFAULT '[]',
        regions TEXT NOT NULL DEFAULT '[]',
        digests TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'active',
        created_at TEXT NOT NULL
    );
    CREATE TABLE relay_sends (
        id INTEGER PRIMARY KEY,
        publication_id INTEGER NOT NULL REFERENCES publications(id),
        relay_id TEXT NOT NULL REFERENCES relays(id),
        envelope TEXT NOT NULL,
        ref TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        received_at TEXT,
        translated_at TEXT,
        dispatched_at TEXT,
        translated TEXT NOT NULL DEFAULT '{}',
        dispatched TEXT NOT NULL DEFAULT '{}',
        UNIQUE (publication_id, relay_id)
    );
    CREATE TABLE federation_seen (
        node TEXT NOT NULL,
        envelope TEXT NOT NULL,
        kind TEXT NOT NULL,
        message_id INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (node, envelope)
    );
    CREATE TABLE federation_refusals (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        message_id INTEGER,
        mail_from TEXT NOT NULL DEFAULT '',
        node TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL
    );
    CREATE TABLE relay_publications (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        number INTEGER NOT NULL DEFAULT 0,
        title TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL,
        payload TEXT NOT NULL,
        envelope TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'received',
        received_at TEXT NOT NULL,
        deadline_at TEXT NOT NULL,
        ready_at TEXT,
        dispatched_at TEXT,
        counts TEXT NOT NULL DEFAULT '{}',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX relay_publications_status ON relay_publications (status, deadline_at);
    CREATE TABLE relay_recipients (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        address TEXT,
        name TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL,
        postal_address TEXT NOT NULL DEFAULT '',
        country TEXT NOT NULL DEFAULT '',
        budget INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (profile, address)
    );
    CREATE INDEX relay_recipients_groups ON relay_recipients (profile, language, budget);
    CREATE TABLE translation_sheets (
        id INTEGER PRIMARY KEY,
        publication_id INTEGER NOT NULL REFERENCES relay_publications(id),
        language TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        token_id INTEGER,
        created_at TEXT NOT NULL,
        completed_at TEXT,
        UNIQUE (publication_id, language)
    );
    CREATE TABLE translation_segments (
        id INTEGER PRIMARY KEY,
        publication_id INTEGER NOT NULL REFERENCES relay_publications(id),
        language TEXT NOT NULL,
        number INTEGER NOT NULL,
        path TEXT NOT NULL,
        source_language TEXT NOT NULL,
        source TEXT NOT NULL,
        text TEXT,
        draft TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        filled_by TEXT NOT NULL DEFAULT '',
        filled_at TEXT,
        UNIQUE (publication_id, language, number)
    );
    CREATE TABLE translation_memory (
        source_language TEXT NOT NULL,
        language TEXT NOT NULL,
        source TEXT NOT NULL,
        text TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (source_language, language, source)
    );
    CREATE TABLE relay_links (
        ref TEXT PRIMARY KEY,
        publication_id INTEGER NOT NULL REFERENCES relay_publications(id),
        path TEXT NOT NULL,
        url TEXT NOT NULL DEFAULT '',
        UNIQUE (publication_id, path, url)
    );
    CREATE TABLE postal_batches (
        id TEXT PRIMARY KEY,
        publication_id INTEGER NOT NULL REFERENCES relay_publications(id),
        language TEXT NOT NULL,
        folder TEXT NOT NULL,
        recipients INTEGER NOT NULL DEFAULT 0,
        countries TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'building',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        built_at TEXT,
        sent_at TEXT,
        UNIQUE (publication_id, language)
    );
    CREATE TABLE postal_labels (
        batch_id TEXT NOT NULL REFERENCES postal_batches(id),
        recipient_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        postal_address TEXT NOT NULL,
        country TEXT NOT NULL,
        PRIMARY KEY (batch_id, recipient_id)
    );
    CREATE TABLE relay_upstream (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        forum TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL,
        envelope TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        UNIQUE (message_id, kind, forum)
    );
    """,
    # 5: digests (written by digests/): initiatives reported to whatsnew@ and
    # which What's New issue carried each; which digest carried each post
    # (a post's row here is what keeps it in exactly one digest); the
    # bulletin's direct readers and opt-outs; and every version of every site
    # template (active, superseded, broken, proposed by email), for rollback.
    5: """
    CREATE TABLE initiatives (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        link TEXT NOT NULL DEFAULT '',
        region TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL DEFAULT '',
        forum TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL,
        happens TEXT NOT NULL DEFAULT '',
        reporter TEXT NOT NULL,
        reporter_name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'review',
        reason TEXT NOT NULL DEFAULT '',
        message_id INTEGER,
        ack_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        accepted_at TEXT,
        publication TEXT
    );
    CREATE INDEX initiatives_due ON initiatives (status, publication, accepted_at);
    CREATE INDEX initiatives_reporter ON initiatives (reporter);
    CREATE INDEX initiatives_ack ON initiatives (ack_id);

    CREATE TABLE digest_posts (
        post_id INTEGER PRIMARY KEY REFERENCES posts(id),
        forum_id INTEGER NOT NULL,
        publication TEXT NOT NULL
    );

    CREATE TABLE bulletin_readers (
        address TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        status TEXT NOT NULL,
        language TEXT NOT NULL,
        profile TEXT NOT NULL DEFAULT 'email',
        at TEXT NOT NULL
    );

    CREATE TABLE template_versions (
        id INTEGER PRIMARY KEY,
        language TEXT NOT NULL,
        name TEXT NOT NULL,
        source TEXT,
        sha TEXT NOT NULL,
        status TEXT NOT NULL,
        via TEXT NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        activated_at TEXT
    );
    CREATE INDEX template_versions_name ON template_versions (language, name, id);
    CREATE INDEX posts_forum_distributed ON posts (forum_id, status, distributed_at);
    """,
    6: """
    -- A message or post whose handling failed waits until retry_at (epoch
    -- seconds) before its next try, so a passing cause has time to clear.
    ALTER TABLE messages ADD COLUMN retry_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE posts ADD COLUMN retry_at REAL NOT NULL DEFAULT 0;
    """,
    7: """
    -- A delivery row may carry a batch: the recipients of one domain that go
    -- in one SMTP transaction, as a JSON array in `recipients` (NULL when the
    -- row is for `recipient` alone), `size` of them. `recipient` is then the
    -- first of them, which keeps (ref, recipient) unique. A recipient whose
    -- transaction ends differently from the rest of its batch is split off
    -- into a row of its own.
    ALTER TABLE deliveries ADD COLUMN recipients TEXT;
    ALTER TABLE deliveries ADD COLUMN size INTEGER NOT NULL DEFAULT 1;
    -- One line per recipient, whether the row is a batch or not.
    CREATE VIEW delivery_recipients AS
        SELECT id, ref, body_id, recipient, domain, sender, status, attempts, next_at,
               created_at, sent_at, last_error
        FROM deliveries WHERE recipients IS NULL
        UNION ALL
        SELECT d.id, d.ref, d.body_id, j.value, d.domain, d.sender, d.status, d.attempts,
               d.next_at, d.created_at, d.sent_at, d.last_error
        FROM deliveries d, json_each(d.recipients) j WHERE d.recipients IS NOT NULL;
    """,
    8: """
    -- DMARC mitigation per forum: 'auto' (munge or wrap only posts from
    -- domains whose policy is quarantine or reject), 'munge', 'wrap', 'none'.
    ALTER TABLE forums ADD COLUMN dmarc TEXT NOT NULL DEFAULT 'auto';
    -- Bounce processing per member: `bounce_score` counts days with a
    -- permanent failure (at most one a day, `last_bounce_at` the latest);
    -- `delivery` is 'enabled' or 'disabled' (by bounces: `disabled_at`), and
    -- `warnings` notices have been sent since, the last at `warned_at`.
    ALTER TABLE members ADD COLUMN bounce_score INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN last_bounce_at TEXT;
    ALTER TABLE members ADD COLUMN delivery TEXT NOT NULL DEFAULT 'enabled';
    ALTER TABLE members ADD COLUMN disabled_at TEXT;
    ALTER TABLE members ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN warned_at TEXT;
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


class StoreError(Exception):
    """The database cannot be opened or migrated."""


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


WRITER_CACHE_KIB = 32 * 1024  # the writer's page cache: a fan-out's rows and indexes stay in it


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
        # (priority, order, job): intake's commits and the delivery engine's claims
        # (priority 0) go before the pipeline's work, so a burst of mail is
        # accepted first and handled after, and connections never wait for it.
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="listserv-writer", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._committed = threading.Event()
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
        self._checkpointer.join(timeout=30)

    def _checkpoint(self) -> None:
        _name_thread("ls-checkpoint")
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                               check_same_thread=False)
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
                time.sleep(self.CHECKPOINT_PAUSE)
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
