-- A message or post whose handling failed waits until retry_at (epoch
-- seconds) before its next try, so a passing cause has time to clear.
ALTER TABLE messages ADD COLUMN retry_at REAL NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN retry_at REAL NOT NULL DEFAULT 0;
