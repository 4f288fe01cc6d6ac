"""Trying again what was set aside after failing, like Mailman's `unshunt`.

Two kinds of work are set aside with status 'failed' and a reason:

- outbound deliveries that failed for good (given up after
  `[delivery] give_up_after`, or refused) or bounced. `retry_deliveries`
  puts them back in the queue as new: 'queued', due now, no tries counted,
  and the give-up clock started again (otherwise a row older than
  give_up_after would fail again at its first deferral). A bounced row is
  retried only when named by id: a permanent refusal is not retried in bulk;
- received messages the pipeline could not handle (three failed tries) and
  approved posts that could not be distributed. `retry_held` gives them
  their tries back: the message is 'received' again, the post 'approved'.

Each returns what it changed; nothing is sent from here (serve picks the
rows up by their status). Writes `deliveries`, `messages`, `posts`.
"""

from __future__ import annotations

from datetime import datetime

from listserv.errors import ListservError, NotFound


def retry_deliveries(db, ids: list[int] | None, now: datetime) -> list[dict]:
    """Queue again the failed delivery rows `ids` (or, with None, every failed
    row); returns them. A row that is not failed or bounced is an error."""
    if ids is None:
        rows = list(db.query("SELECT id, recipient, size, status FROM deliveries "
                             "WHERE status = 'failed' ORDER BY id"))
    else:
        rows = []
        for delivery_id in ids:
            row = db.execute("SELECT id, recipient, size, status FROM deliveries WHERE id = ?",
                             [delivery_id]).fetchone()
            if row is None:
                raise NotFound(f"delivery {delivery_id} does not exist (see 'listserv queue')")
            if row[3] not in ("failed", "bounced"):
                raise ListservError(f"delivery {delivery_id} is {row[3]}, not failed or "
                                    f"bounced; nothing to retry")
            rows.append(dict(zip(("id", "recipient", "size", "status"), row)))
    stamp = now.timestamp()
    db.conn.executemany(
        "UPDATE deliveries SET status = 'queued', attempts = 0, next_at = ?, created_at = ?, "
        "last_error = '' WHERE id = ?", [(stamp, stamp, row["id"]) for row in rows])
    return rows


def retry_held(db, message_ids: list[int], post_ids: list[int], everything: bool) -> dict:
    """Give set-aside messages and posts their tries back; returns their ids.
    A message id also retries that message's failed posts."""
    if everything:
        message_ids = [r[0] for r in db.execute(
            "SELECT id FROM messages WHERE status = 'failed' ORDER BY id")]
        post_ids = [r[0] for r in db.execute(
            "SELECT id FROM posts WHERE status = 'failed' ORDER BY id")]
    messages, posts = [], []
    for message_id in message_ids:
        row = db.execute("SELECT status FROM messages WHERE id = ?", [message_id]).fetchone()
        if row is None:
            raise NotFound(f"message {message_id} does not exist (see 'listserv status')")
        failed_posts = [r[0] for r in db.execute(
            "SELECT id FROM posts WHERE message_id = ? AND status = 'failed'", [message_id])]
        if row[0] != "failed" and not failed_posts:
            raise ListservError(f"message {message_id} is {row[0]}, not set aside; "
                                f"nothing to retry")
        if row[0] == "failed":
            messages.append(message_id)
        posts += [p for p in failed_posts if p not in posts]
    for post_id in post_ids:
        row = db.execute("SELECT status FROM posts WHERE id = ?", [post_id]).fetchone()
        if row is None:
            raise NotFound(f"post {post_id} does not exist (see 'listserv status')")
        if row[0] != "failed":
            raise ListservError(f"post {post_id} is {row[0]}, not set aside; nothing to retry")
        if post_id not in posts:
            posts.append(post_id)
    db.conn.executemany("UPDATE messages SET status = 'received', attempts = 0, retry_at = 0, "
                        "error = '' WHERE id = ?", [(m,) for m in messages])
    db.conn.executemany("UPDATE posts SET status = 'approved', attempts = 0, retry_at = 0, "
                        "reason = '' WHERE id = ?", [(p,) for p in posts])
    return {"messages": messages, "posts": posts}
