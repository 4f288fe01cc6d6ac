-- 11: relays (written by relays/): each language of a publication is
-- dispatched on its own as soon as it is ready; readers' own changes by
-- email; postal labels that do not fit, and posting reported to the hub;
-- upstream mail the hub let in for a relay, with the language declared.
CREATE TABLE relay_dispatches (
    publication_id INTEGER NOT NULL REFERENCES relay_publications(id),
    language TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ready',
    ready_at TEXT NOT NULL,
    dispatched_at TEXT,
    counts TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (publication_id, language)
);
CREATE INDEX relay_dispatches_status ON relay_dispatches (status, ready_at);
ALTER TABLE postal_batches ADD COLUMN problems TEXT NOT NULL DEFAULT '[]';
ALTER TABLE relay_sends ADD COLUMN posted_at TEXT;
ALTER TABLE relay_sends ADD COLUMN posted TEXT NOT NULL DEFAULT '{}';
ALTER TABLE translation_segments ADD COLUMN sheet_number INTEGER;
CREATE TABLE relay_injected (
    message_id INTEGER PRIMARY KEY,
    relay_id TEXT NOT NULL,
    author TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT '',
    reader INTEGER NOT NULL DEFAULT 0
);
