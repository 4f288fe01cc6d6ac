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
