"""Reminders, escalation and expiry: held work is never forgotten nor dropped silently.

`remind_due(db, site, now)` works out from the store what is owed at `now`
and does it, so the scheduler only has to wake it up: a run missed while
the server was down is caught up, and a run repeated changes nothing.
- held posts (and subscription requests) waiting longer than
  [moderation] remind_after are listed in one summary per forum to its
  facilitators, at most once per remind_every, each with a fresh reply
  address to decide it;
- held posts waiting longer than escalate_after are reported once to the
  [site] secretariat;
- held posts waiting longer than expire_after expire: they are not
  distributed and the poster is told (unless the poster is an automatic or
  bulk sender, RFC 3834); requests whose confirmation lapsed (token_lifetime)
  expire and the requester is told.
Writes `holds` and `subscription_requests` (their reminder, escalation and
decision columns), tokens, and the outbound queue.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from listserv.delivery.notify import send_template
from listserv.site import forums
from moderation import holds, requests
from moderation.notices import decision_token, notify_expired, recipients, when

log = logging.getLogger(__name__)

BATCH = 200


def remind_due(db, site, now: datetime) -> dict:
    """Do every expiry, escalation and reminder owed at `now`; returns counts."""
    return {"expired": expire_due(db, site, now), "escalated": escalate_due(db, site, now),
            "reminded": summaries_due(db, site, now)}


def _before(now: datetime, site, key: str) -> str:
    return (now - timedelta(seconds=site.settings.moderation.seconds(key))).isoformat()


def _days(seconds: int) -> int:
    return max(1, round(seconds / 86400))


def expire_due(db, site, now: datetime) -> int:
    settings = site.settings.moderation
    rows = db.execute("SELECT id FROM holds WHERE status = 'held' AND created_at <= ? "
                      "ORDER BY id LIMIT ?", [_before(now, site, "expire_after"), BATCH])
    expired = 0
    for (hold_id,) in rows.fetchall():
        days = _days(settings.seconds("expire_after"))
        with db.atomic():
            hold = holds.decide(db, hold_id, "expire", by="listserv", via="expiry", now=now,
                                reason=f"no facilitator decided within {days} days")
            notify_expired(db, site, hold, days, now)
        log.info("hold %s on %s expired after %s days; not distributed", hold_id, hold["slug"],
                 days)
        expired += 1
    lapsed = db.execute("SELECT id FROM subscription_requests WHERE status = 'waiting' AND "
                        "expires_at < ? ORDER BY id LIMIT ?", [now.isoformat(), BATCH])
    for (request_id,) in lapsed.fetchall():
        requests.decide_request(db, site, request_id, "expire", by="listserv", via="expiry",
                                now=now, reason="no facilitator decided in time")
        expired += 1
    return expired


def escalate_due(db, site, now: datetime) -> int:
    """Report to the secretariat, once, each hold older than escalate_after."""
    rows = list(db.query(
        "SELECT h.id, h.reason, h.created_at, f.slug, p.sender, p.subject FROM holds h "
        "JOIN forums f ON f.id = h.forum_id JOIN posts p ON p.id = h.post_id "
        "WHERE h.status = 'held' AND h.escalated_at IS NULL AND h.created_at <= ? "
        "ORDER BY h.id LIMIT ?", [_before(now, site, "escalate_after"), BATCH]))
    if not rows:
        return 0
    secretariat = site.settings.site.secretariat
    items = [_item(row, now) for row in rows]
    for address in secretariat:
        send_template(db, site, "moderation-escalation.txt", to=address,
                      language=site.settings.site.default_language, ref=f"escalation:{rows[0]['id']}-{rows[-1]['id']}",
                      now=now, items=items,
                      days=_days(site.settings.moderation.seconds("escalate_after")))
    if not secretariat:
        log.warning("%s held posts wait too long and no [site] secretariat is set to tell",
                    len(rows))
    db.execute(f"UPDATE holds SET escalated_at = ? WHERE id IN ({', '.join('?' * len(rows))})",
               [now.isoformat(), *(row["id"] for row in rows)])
    log.info("escalated %s held posts to the secretariat", len(rows))
    return len(rows)


def _item(row: dict, now: datetime) -> dict:
    age = now - datetime.fromisoformat(row["created_at"])
    return {"id": row["id"], "forum": row.get("slug", ""), "sender": row.get("sender") or "",
            "subject": (row.get("subject") or "")[:120], "reason": row.get("reason", ""),
            "since": when(row["created_at"]), "days": age.days, "decide": None}


def summaries_due(db, site, now: datetime) -> int:
    """One summary to each forum's facilitators whose old holds are due a reminder."""
    old, again = _before(now, site, "remind_after"), _before(now, site, "remind_every")
    due = [row[0] for row in db.execute(
        "SELECT DISTINCT forum_id FROM holds WHERE status = 'held' AND created_at <= ? AND "
        "(reminded_at IS NULL OR reminded_at <= ?) UNION SELECT DISTINCT forum_id FROM "
        "subscription_requests WHERE status = 'waiting' AND created_at <= ? AND "
        "(reminded_at IS NULL OR reminded_at <= ?)", [old, again, old, again])]
    for forum_id in due:
        with db.atomic():
            send_summary(db, site, forum_id, old, now)
    return len(due)


def send_summary(db, site, forum_id: int, old: str, now: datetime) -> None:
    slug = db.execute("SELECT slug FROM forums WHERE id = ?", [forum_id]).fetchone()[0]
    forum = forums.get(db, slug)
    held = list(db.query(
        "SELECT h.id, h.reason, h.created_at, p.sender, p.subject FROM holds h JOIN posts p "
        "ON p.id = h.post_id WHERE h.forum_id = ? AND h.status = 'held' AND h.created_at <= ? "
        "ORDER BY h.id LIMIT ?", [forum_id, old, BATCH]))
    waiting = list(db.query(
        "SELECT id, address AS sender, created_at FROM subscription_requests WHERE forum_id = ? "
        "AND status = 'waiting' AND created_at <= ? ORDER BY id LIMIT ?",
        [forum_id, old, BATCH]))
    to, can_reply = recipients(site, forum)
    posts, joins = [_item(row, now) for row in held], [_item(row, now) for row in waiting]
    if can_reply:
        for kind, items in (("hold", posts), ("request", joins)):
            for item in items:
                item["decide"] = decision_token(db, site, forum, {kind: item["id"]}, now)
    for address in to:
        send_template(db, site, "moderation-summary.txt", to=address,
                      language=forum["language"], ref=f"summary:{forum_id}:{now.isoformat()}",
                      now=now, forum=forum, posts=posts, requests=joins,
                      expire_days=_days(site.settings.moderation.seconds("expire_after")))
    stamp = now.isoformat()
    for table, items in (("holds", posts), ("subscription_requests", joins)):
        if items:
            db.execute(f"UPDATE {table} SET reminded_at = ? WHERE id IN "
                       f"({', '.join('?' * len(items))})", [stamp, *(i["id"] for i in items)])
    log.info("reminded the facilitators of %s of %s held posts and %s requests", slug,
             len(posts), len(joins))
