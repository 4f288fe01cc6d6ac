-- Automatic replies (command replies, confirmations, acknowledgements) per
-- recipient, for [site] max_replies_per_hour: `at` in epoch seconds.
CREATE TABLE auto_replies (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    at REAL NOT NULL,
    ref TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auto_replies_recipient ON auto_replies (recipient, at);
