"""Deliveries given up: someone is told, once.

A delivery row ends 'failed' when its retries ran past `give_up_after` (or
it could never be sent: no usable address, no stored message). Nobody would
hear of it; `tell_failures(db, site, now)` works out from the store who is
owed word and tells them:
- for a post, its poster, once per post (`delivery-failed-poster.txt`: how
  many members it did not reach, not who: members' addresses stay with the
  facilitators), and the forum's facilitators in a summary at most once a
  day (`delivery-failed-summary.txt`: each address and why), or the
  secretariat when the forum has none;
- for the site's own mail (notices, confirmations, digests, What's New), the
  [site] secretariat, in the same daily kind of summary
  (`delivery-failed-site.txt`).
A summary about failed summaries is never sent (the failure is logged), so
word of failures cannot feed on itself. Each row is told once (`told_at`)
and listed in one summary (`reported_at`); a summary's time per audience is
kept in `meta`. Run it again at any moment: it changes nothing that was
done. Writes those columns, `meta` and, through `notify.py`, the outbound
queue; reads `posts`, `forums`, `members`, `facilitators`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.site import forums

log = logging.getLogger(__name__)

BATCH = 500  # rows told per run; the rest in the next
SUMMARY_EVERY = 86400.0  # seconds between two summaries to the same people
LISTED = 50  # addresses named in one summary; the rest are counted
SUMMARY_REF = "failures:"  # refs of the summaries themselves


def tell_failures(db, site, now: datetime) -> int:
    """Tell the posters of newly failed deliveries and send the summaries that
    are due; returns how many rows were newly told or reported."""
    stamp = now.timestamp()
    rows = list(db.query(
        "SELECT id, ref FROM deliveries WHERE status = 'failed' AND told_at IS NULL "
        "ORDER BY id LIMIT ?", [BATCH]))
    for post_id in sorted({_post_of(row["ref"]) for row in rows} - {None}):
        tell_poster(db, site, post_id, now)
    if rows:
        db.execute("UPDATE deliveries SET told_at = ? WHERE id IN "
                   "(SELECT value FROM json_each(?))", [stamp, json.dumps([r["id"] for r in rows])])
    return len(rows) + send_summaries(db, site, now)


def _post_of(ref: str) -> int | None:
    """The post a delivery's ref is a copy of ("post:17", "post:17:lowband:2")."""
    if not ref.startswith("post:"):
        return None
    number = ref.split(":")[1]
    return int(number) if number.isdigit() else None


def _give_up(site) -> dict:
    seconds = site.settings.delivery.give_up_seconds
    return {"give_up_days": seconds // 86400, "give_up_hours": max(1, round(seconds / 3600))}


def tell_poster(db, site, post_id: int, now: datetime) -> bool:
    """Tell a post's poster, once, that some members could not be reached."""
    post = db.execute("SELECT id, forum_id, sender, subject, created_at FROM posts "
                      "WHERE id = ?", [post_id]).fetchone()
    if post is None or "@" not in (post[2] or ""):
        return False
    _, forum_id, sender, subject, created_at = post
    forum = _forum(db, forum_id)
    if forum is None:
        return False
    failed = db.execute(
        "SELECT coalesce(sum(size), 0) FROM deliveries WHERE status = 'failed' AND "
        "(ref = ? OR ref LIKE ?)", [f"post:{post_id}", f"post:{post_id}:%"]).fetchone()[0]
    member = db.execute("SELECT language FROM members WHERE forum_id = ? AND address = ?",
                        [forum_id, sender]).fetchone()
    language = member[0] if member else forum["language"]
    queued = send_template(db, site, "delivery-failed-poster.txt", to=sender,
                           language=language, ref=f"gave-up:post:{post_id}", now=now,
                           forum=forum, subject=subject or "", count=failed,
                           posted=(created_at or "")[:10], **_give_up(site))
    if queued:
        log.info("told %s that post %s on %s did not reach %d members", sender, post_id,
                 forum["slug"], failed)
    return bool(queued)


def _forum(db, forum_id: int) -> dict | None:
    found = db.execute("SELECT slug FROM forums WHERE id = ?", [forum_id]).fetchone()
    return forums.get(db, found[0]) if found else None


def _unreported(db) -> list[dict]:
    return list(db.query(
        "SELECT d.id, d.ref, d.recipient, d.recipients, d.size, d.last_error, d.body_id, "
        "p.forum_id, p.subject FROM deliveries d LEFT JOIN posts p ON d.ref LIKE 'post:%' "
        "AND p.id = CAST(substr(d.ref, 6) AS INTEGER) WHERE d.status = 'failed' "
        "AND d.told_at IS NOT NULL AND d.reported_at IS NULL ORDER BY d.id LIMIT ?", [BATCH]))


def send_summaries(db, site, now: datetime) -> int:
    """Send each audience its summary of failures, when it has some and its
    last summary is a day old; returns how many rows they listed."""
    stamp = now.timestamp()
    audiences: dict[str, list[dict]] = {}
    for row in _unreported(db):
        if row["ref"].startswith(SUMMARY_REF):  # word of failures is never summarised
            log.warning("a summary of failed deliveries could not be delivered to %s: %s",
                        row["recipient"], row["last_error"])
            _reported(db, [row], stamp)
            continue
        key = f"forum:{row['forum_id']}" if row["forum_id"] is not None else "site"
        audiences.setdefault(key, []).append(row)
    listed = 0
    for key, rows in audiences.items():
        last = db.execute("SELECT value FROM meta WHERE key = ?",
                          [f"failures-summary:{key}"]).fetchone()
        if last is not None and stamp - float(last[0]) < SUMMARY_EVERY:
            continue  # the next summary takes them
        if key == "site":
            send_site_summary(db, site, rows, now)
        else:
            send_forum_summary(db, site, int(key.split(":")[1]), rows, now)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   [f"failures-summary:{key}", repr(stamp)])
        _reported(db, rows, stamp)
        listed += len(rows)
    return listed


def _reported(db, rows: list[dict], stamp: float) -> None:
    db.execute("UPDATE deliveries SET reported_at = ? WHERE id IN "
               "(SELECT value FROM json_each(?))", [stamp, json.dumps([r["id"] for r in rows])])


def _items(rows: list[dict]) -> tuple[list[dict], int]:
    """Each failed address with what it was and why (at most LISTED), and how many in all."""
    items = []
    for row in rows:
        for recipient in json.loads(row["recipients"]) if row["recipients"] else [row["recipient"]]:
            if len(items) < LISTED:
                items.append({"recipient": recipient, "ref": row["ref"],
                              "subject": (row["subject"] or "")[:120],
                              "reason": row["last_error"]})
    return items, sum(row["size"] for row in rows)


def send_forum_summary(db, site, forum_id: int, rows: list[dict], now: datetime) -> int:
    forum = _forum(db, forum_id)
    if forum is None:
        return send_site_summary(db, site, rows, now)
    to = forums.facilitators(db, forum_id) or list(site.settings.site.secretariat)
    items, total = _items(rows)
    for address in to:
        send_template(db, site, "delivery-failed-summary.txt", to=address,
                      language=forum["language"], ref=f"{SUMMARY_REF}forum:{forum_id}:"
                      f"{now.timestamp():.0f}", now=now, forum=forum, items=items, total=total,
                      more=total - len(items), **_give_up(site))
    if not to:
        log.warning("%d deliveries of posts on %s were given up and the forum has no "
                    "facilitator nor the site a [site] secretariat to tell", total, forum["slug"])
    else:
        log.info("told the facilitators of %s of %d failed deliveries", forum["slug"], total)
    return len(to)


def send_site_summary(db, site, rows: list[dict], now: datetime) -> int:
    secretariat = list(site.settings.site.secretariat)
    items, total = _items(rows)
    for address in secretariat:
        send_template(db, site, "delivery-failed-site.txt", to=address,
                      language=site.settings.site.default_language,
                      ref=f"{SUMMARY_REF}site:{now.timestamp():.0f}", now=now, items=items,
                      total=total, more=total - len(items), **_give_up(site))
    if not secretariat:
        log.warning("%d deliveries of the site's own mail were given up and no [site] "
                    "secretariat is set to tell", total)
    else:
        log.info("told the secretariat of %d failed deliveries of the site's mail", total)
    return len(secretariat)
