"""What the site keeps, and for how long: purging what is no longer needed.

Run by `serve`'s hourly housekeeping and by `listserv purge`. Each call
removes at most `limit` rows of each kind, in one transaction, and says how
many it removed, so a caller repeats it until nothing is left and the writer
is never held long:

- delivery rows that were sent longer than `[site] keep_sent` ago (the
  queue's record of each copy; failed and bounced rows stay, so they can be
  retried or looked at);
- the raw bytes of messages older than `[site] keep_raw` whose every post
  was distributed and is in no digest still to come (it is in one, its
  forum sends none, or it is older than any digest's period): nothing will
  render them again. The message row stays (sender, subject, Message-ID, size, when)
  with its raw emptied, so the record of the forum's posts is whole; held,
  failed or still pending messages keep their bytes whatever their age;
- rendered bodies no delivery refers to any more, older than keep_sent;
- tokens expired a month ago.

Writes `deliveries`, `messages.raw`, `bodies`, `tokens`, and in `meta` the
number of recipients whose sent rows it purged (so /metrics keeps counting). Will not touch
holds, posts, members or events.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

TOKEN_GRACE = timedelta(days=30)
PURGED_SENT = "purged_sent_recipients"  # meta: recipients of the sent rows purged so far
# A digest carries the posts of its period (a week at most) that no digest
# carried yet; a post distributed longer ago than this is in none to come.
DIGEST_WINDOW = timedelta(days=8)


def purge_old(db, settings, now: datetime, limit: int = 2000) -> dict[str, int]:
    """One bounded round of purging; returns the rows removed or emptied, by kind."""
    now = now.astimezone(timezone.utc)  # stored times are UTC ISO strings and epochs
    sent_before = now - timedelta(seconds=settings.site.keep_sent_seconds)
    raw_before = now - timedelta(seconds=settings.site.keep_raw_seconds)
    done = {}
    old_sent = ("SELECT id FROM deliveries WHERE status = 'sent' AND sent_at < ? "
                "ORDER BY id LIMIT ?")
    params = [sent_before.timestamp(), limit]
    recipients = db.execute(f"SELECT coalesce(sum(size), 0) FROM deliveries WHERE id IN "
                            f"({old_sent})", params).fetchone()[0]
    if recipients:  # the running total /metrics adds to the rows still kept
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                   "SET value = CAST(value AS INTEGER) + excluded.value",
                   [PURGED_SENT, recipients])
    done["deliveries"] = db.execute(f"DELETE FROM deliveries WHERE id IN ({old_sent})",
                                    params).rowcount
    done["bodies"] = db.execute(
        "DELETE FROM bodies WHERE id IN (SELECT b.id FROM bodies b WHERE b.created_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.body_id = b.id) LIMIT ?)",
        [sent_before.isoformat(), limit]).rowcount
    done["raw"] = db.execute(
        "UPDATE messages SET raw = X'' WHERE id IN (SELECT m.id FROM messages m "
        "WHERE m.received_at < ? AND m.status != 'failed' AND length(m.raw) > 0 "
        "AND EXISTS (SELECT 1 FROM posts p WHERE p.message_id = m.id) "
        "AND NOT EXISTS (SELECT 1 FROM posts p JOIN forums f ON f.id = p.forum_id "
        "  WHERE p.message_id = m.id AND (p.status != 'distributed' OR (f.digest != 'never' "
        "  AND NOT EXISTS (SELECT 1 FROM digest_posts g WHERE g.post_id = p.id) "
        "  AND p.distributed_at > ?))) "
        "LIMIT ?)", [raw_before.isoformat(), (now - DIGEST_WINDOW).isoformat(),
                     limit]).rowcount
    done["tokens"] = db.execute(
        "DELETE FROM tokens WHERE id IN (SELECT id FROM tokens WHERE expires_at < ? LIMIT ?)",
        [(now - TOKEN_GRACE).isoformat(), limit]).rowcount
    return done
