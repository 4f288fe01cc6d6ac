"""Subscription requests that wait for a facilitator (forums with subscription = approve).

`subscriptions.py` keeps a confirmed request as a `tokens` row with purpose
"subscription-approval" (address, options, confirmation and charter
acceptance times in its data). `take_requests` gives each one a
`subscription_requests` row and tells the forum's facilitators, who decide
by reply (the same FORUM-confirm+TOKEN mechanism as held posts) or with
`listserv request approve|reject`. `decide_request` carries a decision out
once: approve (or accept-always) makes the member, keeping the time the
charter was really accepted, and welcomes them; reject tells the requester
the reason; discard tells nobody; ban also bans the address from posting;
expire (nobody decided in time) tells the requester. Writes
`subscription_requests`, the token row's `used_at`, `members`, `events`,
`senders` and the outbound queue.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.errors import AlreadyExists, ListservError, NotFound
from listserv.intake.subscriptions import APPROVAL
from listserv.site import forums, members
from moderation import rules
from moderation.holds import HoldError
from moderation.notices import decision_token, recipients, when

log = logging.getLogger(__name__)

STATUS = {"approve": "approved", "accept-always": "approved", "reject": "rejected",
          "discard": "discarded", "ban": "discarded", "expire": "expired"}


def take_requests(db, site, now: datetime, limit: int = 50) -> int:
    """Record each newly confirmed request and tell its facilitators; returns how many."""
    rows = list(db.query(
        "SELECT t.id, t.forum_id, t.address, t.data, t.created_at, t.expires_at FROM tokens t "
        "WHERE t.purpose = ? AND t.used_at IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM subscription_requests r WHERE r.token_id = t.id) ORDER BY t.id LIMIT ?",
        [APPROVAL, limit]))
    for row in rows:
        request_id = db["subscription_requests"].insert({
            "token_id": row["id"], "forum_id": row["forum_id"], "address": row["address"],
            "data": row["data"], "created_at": row["created_at"],
            "expires_at": row["expires_at"]}).last_pk
        try:
            with db.atomic():
                notify_request(db, site, request_id, now)
        except ListservError as error:
            log.error("subscription request %s: the notice cannot be sent: %s", request_id,
                      error)
        db.execute("UPDATE subscription_requests SET noticed_at = ? WHERE id = ?",
                   [now.isoformat(), request_id])
    return len(rows)


def get_request(db, request_id: int) -> dict:
    rows = list(db.query("SELECT r.*, f.slug FROM subscription_requests r JOIN forums f ON "
                         "f.id = r.forum_id WHERE r.id = ?", [request_id]))
    if not rows:
        raise NotFound(f"subscription request {request_id} does not exist "
                       f"(see 'listserv request list')")
    row = rows[0]
    row["data"] = json.loads(row["data"] or "{}")
    return row


def list_requests(db, slug: str | None = None, status: str | None = "waiting",
                  limit: int = 500) -> list[dict]:
    sql = ("SELECT r.id, f.slug, r.address, r.status, r.created_at, r.expires_at, r.decision, "
           "r.decided_by, r.decided_via, r.decided_at, r.decision_reason, r.data FROM "
           "subscription_requests r JOIN forums f ON f.id = r.forum_id WHERE 1 = 1")
    params: list = []
    if status:
        sql += " AND r.status = ?"
        params.append(status)
    if slug:
        sql += " AND f.slug = ?"
        params.append(slug)
    rows = list(db.query(sql + " ORDER BY r.id LIMIT ?", params + [limit]))
    for row in rows:
        data = json.loads(row.pop("data") or "{}")
        row.update(name=data.get("name", ""), language=data.get("language", ""),
                   mode=data.get("mode", ""), profile=data.get("profile", ""))
    return rows


def notify_request(db, site, request_id: int, now: datetime) -> int:
    """Tell the facilitators of a request waiting for them; returns how many were told."""
    request = get_request(db, request_id)
    forum = forums.get(db, request["slug"])
    to, can_reply = recipients(site, forum)
    decide = decision_token(db, site, forum, {"request": request_id}, now) if can_reply \
        else None
    data = request["data"]
    for address in to:
        send_template(db, site, "moderation-request.txt", to=address,
                      language=forum["language"], ref=f"request:{request_id}", now=now,
                      forum=forum, reply_to=decide["address"] if decide else "",
                      request={"id": request_id, "address": request["address"],
                               "name": data.get("name", ""), "region": data.get("region", ""),
                               "language": data.get("language", ""),
                               "mode": data.get("mode", "each"),
                               "profile": data.get("profile", "email"),
                               "confirmed": when(data.get("confirmed_at")),
                               "charter": when(data.get("charter_accepted_at")),
                               "expires": when(request["expires_at"])},
                      decide=decide)
    return len(to)


def decide_request(db, site, request_id: int, word: str, *, by: str, via: str, now: datetime,
                   reason: str = "") -> dict:
    """Carry out a decision on a subscription request, once; the first decision wins."""
    status = STATUS.get(word)
    if status is None:
        raise HoldError(f"'{word}' is not a decision; use approve, reject, discard or ban")
    with db.atomic():
        request = get_request(db, request_id)
        if request["status"] != "waiting":
            if request["status"] == status == "approved":
                return {**request, "changed": False}
            raise HoldError(f"subscription request {request_id} was already "
                            f"{request['status']} by {request['decided_by']} "
                            f"({request['decided_via']}) at {(request['decided_at'] or '')[:16]}; "
                            f"nothing to {word}")
        db["subscription_requests"].update(request_id, {
            "status": status, "decision": word, "decided_by": by, "decided_via": via,
            "decided_at": now.isoformat(), "decision_reason": reason[:500]})
        db.execute("UPDATE tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
                   [now.isoformat(), request["token_id"]])
        forum = forums.get(db, request["slug"])
        if status == "approved":
            _admit(db, site, forum, request, by, via, now)
        elif word in ("reject", "expire"):
            _tell_refused(db, site, forum, request, reason, word == "expire", now)
        if word == "ban":
            rules.set_standing(db, forum["id"], request["address"], "ban", by=by, via=via,
                               now=now, reason=f"subscription request {request_id}")
        members.record_event(db, now, forum["id"], f"subscription-{status}",
                             request["address"], f"{by} ({via}){': ' + reason if reason else ''}")
    log.info("subscription request %s of %s to %s: %s by %s via %s", request_id,
             request["address"], request["slug"], word, by, via)
    return {**get_request(db, request_id), "changed": True}


def _admit(db, site, forum: dict, request: dict, by: str, via: str, now: datetime) -> None:
    """Make the member; the charter acceptance keeps the time it was really given."""
    data, address = request["data"], request["address"]
    try:
        added = members.add(db, forum["slug"], address, now=now,
                            languages=site.settings.site.languages, name=data.get("name", ""),
                            language=data.get("language") or forum["language"],
                            mode=data.get("mode") or "each",
                            profile=data.get("profile") or "email",
                            region=data.get("region", ""), charter_accepted=False,
                            how=f"approved by {by} ({via})")
    except AlreadyExists:
        log.info("%s is a member of %s already; nothing to add", address, forum["slug"])
        return
    accepted = data.get("charter_accepted_at")
    if accepted:  # recorded as an event when it was given; the member row says so too
        db.execute("UPDATE members SET charter_accepted_at = ? WHERE id = ?",
                   [accepted, added["id"]])
    send_template(db, site, "welcome.txt", to=address, language=added["language"],
                  ref=f"welcome:request:{request['id']}", now=now, forum=forum,
                  address=address, member_name=added["name"], mode=added["mode"],
                  profile=added["profile"], member_language=added["language"],
                  charter_accepted_at=(accepted or "")[:16].replace("T", " "))


def _tell_refused(db, site, forum: dict, request: dict, reason: str, expired: bool,
                  now: datetime) -> None:
    send_template(db, site, "moderation-request-refused.txt", to=request["address"],
                  language=request["data"].get("language") or forum["language"],
                  ref=f"refused:request:{request['id']}", now=now, forum=forum,
                  address=request["address"], reason=reason, expired=expired,
                  days=max(1, round((now - datetime.fromisoformat(request["created_at"]))
                                    .total_seconds() / 86400)))
