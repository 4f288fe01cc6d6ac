-- 2: moderation (written by moderation/): each forum's hold rules (see
-- moderation/rules.py), what became of each hold's notice, reminder and
-- escalation, the decision word used, a digest of each post's text (to
-- see the same text coming round again), senders' standing per forum
-- (accept: never held for who they are; ban: their posts are discarded),
-- and confirmed subscription requests waiting for a facilitator.
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
