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
