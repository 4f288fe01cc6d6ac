"""Bounces that act: disabling, warning, re-enabling and removing members, as
Mailman's bounce processing does.

bounces.py scores each permanent failure (one point a day at most). Here:

- `act_on_member`: at `[bounces] threshold` the member's delivery is
  disabled (posts and digests skip them) and the first notice goes out, in
  their language, with a FORUM-confirm+TOKEN address: one reply turns
  delivery back on (`handle_reenable`), as does `listserv member enable`.
- `act_on_bounces` (the server runs it every `check_every`): scores that
  went stale start again from zero; disabled members get the next notice
  every `warning_interval`, up to `warnings`, and are removed one interval
  after the last; each forum's facilitators get one short summary a day of
  who was disabled or removed since the last.

Works out everything owed from the store and `now`, so a restart loses or
repeats nothing. Writes `members`, `events`, `tokens`, `meta` and, through
notify.py, the queue.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from listserv.delivery.notify import forum_addresses, send_template
from listserv.errors import ListservError, NotFound
from listserv.mail.tokens import issue_token, peek_token, use_token
from listserv.site import members

log = logging.getLogger(__name__)

REENABLE = "reenable"
SUMMARY_KEY = "bounce-summary:{forum_id}"


def _forum(db, forum_id: int) -> dict:
    from listserv.site.forums import facilitators
    row = dict(next(db.query("SELECT * FROM forums WHERE id = ?", [forum_id])))
    row["facilitators"] = facilitators(db, forum_id)
    return row


def _member(db, forum_id: int, address: str) -> dict | None:
    return members.find(db, forum_id, address)


def act_on_member(db, site, forum_id: int, address: str, now: datetime) -> bool:
    """Disable the member and send the first notice when their score reached
    the threshold; True when this disabled them."""
    rules = site.settings.bounces
    member = _member(db, forum_id, address)
    if member is None or member["delivery"] != "enabled" or \
            member["bounce_score"] < rules.threshold:
        return False
    db.execute("UPDATE members SET delivery = 'disabled', disabled_at = ?, warnings = 0, "
               "warned_at = NULL WHERE id = ?", [now.isoformat(), member["id"]])
    members.record_event(db, now, forum_id, "bounce-disabled", member["address"],
                         f"score {member['bounce_score']}")
    log.info("delivery to %s on forum %s disabled: bounce score %s", member["address"],
             forum_id, member["bounce_score"])
    if rules.warnings:
        _warn(db, site, _forum(db, forum_id), _member(db, forum_id, address), now)
    return True


def _warn(db, site, forum: dict, member: dict, now: datetime) -> None:
    rules = site.settings.bounces
    number = member["warnings"] + 1
    interval = rules.seconds("warning_interval")
    lifetime = interval * (rules.warnings - number + 1) + 86400
    token = issue_token(db, REENABLE, forum_id=forum["id"], address=member["address"],
                        data={"disabled_at": member["disabled_at"]}, now=now,
                        lifetime_seconds=lifetime)
    confirm = f"{forum['slug']}-confirm+{token}@{site.settings.domain}"
    last = number >= rules.warnings
    removal = now + timedelta(seconds=interval)
    send_template(db, site, "bounce-warning.txt", to=member["address"],
                  language=member["language"], now=now, forum=forum,
                  ref=f"bounce-warning:{member['id']}:{member['disabled_at']}:{number}",
                  address=member["address"], number=number, warnings=rules.warnings,
                  last=last, confirm_address=confirm, score=member["bounce_score"],
                  removal=removal.strftime("%Y-%m-%d"))
    db.execute("UPDATE members SET warnings = ?, warned_at = ? WHERE id = ?",
               [number, now.isoformat(), member["id"]])


def enable(db, forum: dict, address: str, now: datetime, how: str = "admin") -> dict:
    """Turn a member's delivery back on and clear their score."""
    member = _member(db, forum["id"], address.lower())
    if member is None:
        raise NotFound(f"{address} is not a member of '{forum['slug']}' "
                       f"(see 'listserv member list {forum['slug']}')")
    db.execute("UPDATE members SET delivery = 'enabled', bounce_score = 0, disabled_at = NULL, "
               "warnings = 0, warned_at = NULL WHERE id = ?", [member["id"]])
    if member["delivery"] != "enabled":
        members.record_event(db, now, forum["id"], "bounce-enabled", member["address"], how)
        log.info("delivery to %s on %s enabled again (%s)", member["address"], forum["slug"],
                 how)
    return _member(db, forum["id"], address.lower())


def handle_reenable(db, site, forum: dict, token: str, parsed, message_row_id: int,
                    now: datetime) -> bool:
    """A reply to a bounce notice's confirm address: delivery back on. False when
    the token is not a re-enable token (another handler's)."""
    try:
        row = peek_token(db, token, REENABLE)
    except ListservError:
        return False
    if row["forum_id"] != forum["id"]:
        return False
    try:
        use_token(db, token, REENABLE, now)
    except ListservError as error:
        log.info("message %s: re-enable refused: %s", message_row_id, error)
        send_template(db, site, "token-invalid.txt", to=row["address"], now=now,
                      language=forum["language"], ref=f"reply:{message_row_id}", forum=forum,
                      reason=str(error), in_reply_to=parsed.message_id if parsed else "")
        return True
    try:
        member = enable(db, forum, row["address"], now, how="reply")
    except NotFound:
        log.info("message %s: %s is no longer a member of %s; nothing to re-enable",
                 message_row_id, row["address"], forum["slug"])
        return True
    send_template(db, site, "bounce-enabled.txt", to=member["address"],
                  language=member["language"], ref=f"reply:{message_row_id}", now=now,
                  forum=forum, in_reply_to=parsed.message_id if parsed else "",
                  address=member["address"])
    return True


def act_on_bounces(db, site, now: datetime) -> dict[str, int]:
    """Everything owed now: stale scores, members at the threshold, notices,
    removals and the daily summaries. Returns how many of each."""
    rules = site.settings.bounces
    done = {"stale": 0, "disabled": 0, "warned": 0, "removed": 0, "summaries": 0}
    stale = (now - timedelta(seconds=rules.seconds("stale_after"))).isoformat()
    done["stale"] = db.execute(
        "UPDATE members SET bounce_score = 0 WHERE delivery = 'enabled' AND bounce_score > 0 "
        "AND last_bounce_at < ?", [stale]).rowcount
    for forum_id, address in db.execute(
            "SELECT forum_id, address FROM members WHERE delivery = 'enabled' "
            "AND bounce_score >= ?", [rules.threshold]).fetchall():
        done["disabled"] += act_on_member(db, site, forum_id, address, now)
    due = (now - timedelta(seconds=rules.seconds("warning_interval"))).isoformat()
    for row in list(db.query("SELECT * FROM members WHERE delivery = 'disabled' "
                             "AND coalesce(warned_at, disabled_at) <= ?", [due])):
        forum = _forum(db, row["forum_id"])
        if row["warnings"] < rules.warnings:
            _warn(db, site, forum, row, now)
            done["warned"] += 1
        else:
            members.remove(db, forum["slug"], row["address"], now=now, how="bounces")
            members.record_event(db, now, forum["id"], "bounce-removed", row["address"],
                                 f"after {row['warnings']} notices")
            log.info("removed %s from %s: delivery disabled by bounces, %d notices "
                     "unanswered", row["address"], forum["slug"], row["warnings"])
            done["removed"] += 1
    done["summaries"] = send_summaries(db, site, now)
    return done


def send_summaries(db, site, now: datetime) -> int:
    """One short summary a day per forum for its facilitators: members disabled
    by bounces and members removed since the last one."""
    sent = 0
    for forum_id, in db.execute("SELECT DISTINCT forum_id FROM events WHERE kind IN "
                                "('bounce-disabled', 'bounce-removed') AND at > ?",
                                [(now - timedelta(days=8)).isoformat()]).fetchall():
        key = SUMMARY_KEY.format(forum_id=forum_id)
        last = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        since = last[0] if last else ""
        if since and datetime.fromisoformat(since) > now - timedelta(days=1):
            continue
        events = list(db.query("SELECT kind, address, at, detail FROM events WHERE "
                               "forum_id = ? AND kind IN ('bounce-disabled', 'bounce-removed') "
                               "AND at > ? ORDER BY at", [forum_id, since]))
        if not events:
            continue
        forum = _forum(db, forum_id)
        disabled = [e for e in events if e["kind"] == "bounce-disabled"]
        removed = [e for e in events if e["kind"] == "bounce-removed"]
        to = forum["facilitators"] or list(site.settings.site.secretariat)
        for address in to:
            send_template(db, site, "bounce-summary.txt", to=address,
                          language=forum["language"], now=now, forum=forum,
                          ref=f"bounce-summary:{forum_id}:{now:%Y-%m-%d}",
                          disabled=disabled, removed=removed,
                          owner=forum_addresses(forum["slug"], site.settings.domain)["owner"])
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   [key, now.isoformat()])
        sent += 1
    return sent
