"""The hold queue: posts waiting for a facilitator, and every decision on them.

Writes `holds` and the status of the held `posts` row. A decision moves a
hold out of 'held' once; deciding again changes nothing (approving an
approved hold is a no-op, any other second decision is refused with who
decided and when). Approved posts go back to the post pipeline as
'approved', where distribution picks them up. Will not send mail itself:
callers queue the notices. The pipeline hands posts over in status 'hold';
`take_holds` makes them holds.
"""

from __future__ import annotations

import logging
from datetime import datetime

from listserv.errors import ListservError, NotFound

log = logging.getLogger(__name__)

# Decision words and the status each leaves the hold in. accept-always and ban
# also change the sender's standing (moderation/decisions.py); expire is the
# reminders' own decision when nobody decided in time.
DECISIONS = {"approve": "approved", "reject": "rejected", "discard": "discarded",
             "accept-always": "approved", "ban": "discarded", "expire": "expired"}


class HoldError(ListservError):
    """A decision that cannot be carried out; str() says why."""


def hold_post(db, post_id: int, forum_id: int, reason: str, now: datetime) -> int:
    """Put a post on hold with its reason; holding it twice keeps the first hold."""
    db.execute("UPDATE posts SET status = 'held', reason = ? WHERE id = ?", [reason, post_id])
    db.execute("INSERT OR IGNORE INTO holds (post_id, forum_id, reason, created_at) "
               "VALUES (?, ?, ?, ?)", [post_id, forum_id, reason[:500], now.isoformat()])
    hold_id = db.execute("SELECT id FROM holds WHERE post_id = ?", [post_id]).fetchone()[0]
    log.info("held post %s as hold %s: %s", post_id, hold_id, reason)
    return hold_id


def take_holds(db, site, now: datetime, limit: int = 50) -> int:
    """The moderation stage: posts the pipeline marked 'hold' become holds.
    Returns how many were taken."""
    rows = list(db.query("SELECT id, forum_id, reason FROM posts WHERE status = 'hold' "
                         "ORDER BY id LIMIT ?", [limit]))
    for row in rows:
        hold_post(db, row["id"], row["forum_id"], row["reason"] or "held", now)
    return len(rows)


def get_hold(db, hold_id: int) -> dict:
    rows = list(db.query(
        "SELECT h.*, f.slug, p.sender, p.subject, p.header_id, p.message_id "
        "FROM holds h JOIN forums f ON f.id = h.forum_id JOIN posts p ON p.id = h.post_id "
        "WHERE h.id = ?", [hold_id]))
    if not rows:
        raise NotFound(f"hold {hold_id} does not exist (see 'listserv held list')")
    return rows[0]


def decide(db, hold_id: int, decision: str, *, by: str, via: str, now: datetime,
           reason: str = "") -> dict:
    """Carry out `decision` (a word of DECISIONS) on a hold, once.

    Returns the hold as it is afterwards, with `changed` telling whether this
    call decided it. Approving an approved hold changes nothing; any other
    decision on a decided hold raises HoldError naming who decided and when.
    """
    status = DECISIONS.get(decision)
    if status is None:
        raise HoldError(f"'{decision}' is not a decision; use approve, reject, discard, "
                        f"accept-always or ban")
    with db.atomic():
        hold = get_hold(db, hold_id)
        if hold["status"] != "held":
            if hold["status"] == status == "approved":
                return {**hold, "changed": False}
            raise HoldError(f"hold {hold_id} was already {hold['status']} by "
                            f"{hold['decided_by']} ({hold['decided_via']}) at "
                            f"{(hold['decided_at'] or '')[:16]}; nothing to {decision}")
        db["holds"].update(hold_id, {"status": status, "decided_by": by, "decided_via": via,
                                     "decided_at": now.isoformat(), "decision": decision,
                                     "decision_reason": reason[:500]})
        db.execute("UPDATE posts SET status = ?, reason = ? WHERE id = ?",
                   [status, reason[:500] if reason else hold["reason"], hold["post_id"]])
        log.info("hold %s on %s %s by %s via %s", hold_id, hold["slug"], status, by, via)
    return {**get_hold(db, hold_id), "changed": True}


def list_holds(db, slug: str | None = None, status: str = "held", limit: int = 500) -> list[dict]:
    sql = ("SELECT h.id, f.slug, h.status, h.reason, h.created_at, p.sender, p.subject "
           "FROM holds h JOIN forums f ON f.id = h.forum_id JOIN posts p ON p.id = h.post_id "
           "WHERE h.status = ?")
    params: list = [status]
    if slug:
        sql += " AND f.slug = ?"
        params.append(slug)
    return list(db.query(sql + " ORDER BY h.id LIMIT ?", params + [limit]))


def decision_log(db, slug: str | None = None, limit: int = 500) -> list[dict]:
    sql = ("SELECT h.id, f.slug, h.status, h.decision, h.decided_by, h.decided_via, "
           "h.decided_at, h.decision_reason, h.reason, p.sender, p.subject FROM holds h "
           "JOIN forums f ON f.id = h.forum_id JOIN posts p ON p.id = h.post_id "
           "WHERE h.status != 'held'")
    params: list = []
    if slug:
        sql += " AND f.slug = ?"
        params.append(slug)
    return list(db.query(sql + " ORDER BY h.decided_at DESC LIMIT ?", params + [limit]))
