-- 4: relays; 5: digests' own tables.
-- 3: publications, what the hub sends out on a schedule and relays
-- carry; written by digests/, read by relays/. `payload` is the structured
-- publication as JSON (its shape is documented in digests/publications.py).
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
