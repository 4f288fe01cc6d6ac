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
