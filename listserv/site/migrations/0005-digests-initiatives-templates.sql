-- 5: digests (written by digests/): initiatives reported to whatsnew@ and
-- which What's New issue carried each; which digest carried each post
-- (a post's row here is what keeps it in exactly one digest); the
-- bulletin's direct readers and opt-outs; and every version of every site
-- template (active, superseded, broken, proposed by email), for rollback.
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
