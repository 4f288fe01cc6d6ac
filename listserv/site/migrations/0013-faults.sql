-- A delivery given up ('failed') is told to someone once (giveup.py):
-- told_at is when its poster was told (epoch seconds), reported_at when a
-- daily summary to the facilitators or the secretariat listed it. Rows
-- that failed before this are taken as told.
ALTER TABLE deliveries ADD COLUMN told_at REAL;
ALTER TABLE deliveries ADD COLUMN reported_at REAL;
UPDATE deliveries SET told_at = 0, reported_at = 0 WHERE status = 'failed';
CREATE INDEX deliveries_untold ON deliveries (id)
    WHERE status = 'failed' AND (told_at IS NULL OR reported_at IS NULL);
