-- 4: relays (written by relays/). On the hub: the relays it serves and one
-- row per (publication, relay) send with the relay's acknowledgements. On
-- both: federation messages seen (replay guard) and refused. On a relay:
-- publications received, its own recipients (postal addresses never leave
-- it), translation segments, sheets and memory, link references for
-- `get REF`, postal batches, and upstream mail sent to the hub.
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
