"""Joining and leaving a forum: confirmation round trips, the charter, one-click leave.

`request_subscription` sends a confirmation request (carrying the charter in
the member's language when the forum requires it) whose reply address is
`FORUM-confirm+TOKEN@D`; `confirm` carries out such a confirmation (or an
unsubscription's) once; leaving in one step is `leaving.py`'s. Forums whose subscription
policy is `approve` keep a confirmed request waiting for a facilitator as a
`tokens` row with purpose "subscription-approval" (address, forum, options
and the charter acceptance time in `data`; `used_at` set once decided).
Writes `tokens`, `members`, `events` and, through `notify`, the outbound
queue. Will not read command mail: `commands.py` does, and calls this.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from listserv.delivery.notify import send_template
from listserv.errors import ListservError, TokenError
from listserv.mail.addresses import AddressError, check
from listserv.mail.tokens import (
    issue_token,
    peek_token,
    short_mac,
    use_token,
)
from listserv.site import members
from listserv.site.forums import has_charter
from listserv.site.resources import shipped_dir

log = logging.getLogger(__name__)

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
APPROVAL = "subscription-approval"
MAX_OUTSTANDING = 3  # unanswered confirmation requests per address and forum


def confirm_address(forum: dict, domain: str, token: str) -> str:
    """The address whose mail confirms `token` ("just reply" goes there)."""
    return f"{forum['slug']}-confirm+{token}@{domain}"


def leave_address(site, slug: str, address: str) -> str:
    """A member's own one-click leave address, for List-Unsubscribe: the code
    proves the address it was made for, and only mail from that address uses it."""
    return f"{slug}-leave+{short_mac(site.secret, 'leave', slug, address.lower())}" \
           f"@{site.settings.domain}"




def charter_text(site, language: str) -> str:
    """The charter in `language`: the site's `charter/xx.txt`, else the shipped
    `templates/xx/charter.txt`, else the same in English."""
    shipped = shipped_dir("templates")
    for lang in dict.fromkeys((language, "en")):
        for path in (site.charter / f"{lang}.txt", shipped / lang / "charter.txt"):
            if path.is_file():
                return path.read_text(encoding="utf-8", errors="replace").strip()
    return ""


def check_options(site, forum: dict, options: dict) -> dict:
    """Options of a subscription with defaults; ListservError when one is wrong."""
    chosen = {"mode": options.get("mode") or "each",
              "profile": options.get("profile") or "email",
              "language": options.get("language") or forum["language"],
              "name": " ".join(str(options.get("name") or "").split())[:120],
              "region": " ".join(str(options.get("region") or "").split())[:120]}
    members.check_options(language=chosen["language"], mode=chosen["mode"],
                          profile=chosen["profile"], languages=site.settings.site.languages)
    return chosen


def _short(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()[:16]


def _open_tokens(db, purpose: str, forum_id: int, address: str, now: datetime) -> int:
    return db.execute("SELECT count(*) FROM tokens WHERE purpose = ? AND forum_id = ? AND "
                      "address = ? AND used_at IS NULL AND expires_at >= ?",
                      [purpose, forum_id, address, now.isoformat()]).fetchone()[0]


def request_subscription(db, site, forum: dict, address: str, options: dict, now: datetime,
                         how: str = "email", *, ref: str = "", in_reply_to: str = "") -> str:
    """Ask `address` to confirm joining `forum`.

    Returns "sent" (a confirmation request is queued), "member" (already one:
    nothing sent), "pending" (confirmed, waiting for a facilitator) or
    "throttled" (several requests are already unanswered: nothing sent).
    """
    try:
        address = check(address)
    except AddressError as error:
        raise ListservError(str(error)) from None
    chosen = check_options(site, forum, options)
    if members.find(db, forum["id"], address):
        return "member"
    if _open_tokens(db, APPROVAL, forum["id"], address, now):
        return "pending"
    if _open_tokens(db, SUBSCRIBE, forum["id"], address, now) >= MAX_OUTSTANDING:
        log.info("subscription of %s to %s not asked again: %d requests unanswered",
                 address, forum["slug"], MAX_OUTSTANDING)
        return "throttled"
    lifetime = site.settings.moderation.confirm_seconds
    token = issue_token(db, SUBSCRIBE, forum_id=forum["id"], address=address,
                        data={**chosen, "how": how}, now=now, lifetime_seconds=lifetime)
    reply_to = confirm_address(forum, site.settings.domain, token)
    send_template(db, site, "confirm-subscribe.txt", to=address, language=chosen["language"],
                  ref=ref or f"confirm:{_short(token)}", now=now, forum=forum,
                  reply_to=reply_to, in_reply_to=in_reply_to, address=address,
                  confirm_address=reply_to, mode=chosen["mode"], profile=chosen["profile"],
                  member_language=chosen["language"],
                  charter=charter_text(site, chosen["language"]) if has_charter(forum) else "",
                  expires=(now + timedelta(seconds=lifetime)).strftime("%Y-%m-%d %H:%M %Z"))
    members.record_event(db, now, forum["id"], "subscription-requested", address, how)
    log.info("asked %s to confirm joining %s (%s)", address, forum["slug"], how)
    return "sent"


def request_unsubscription(db, site, forum: dict, address: str, now: datetime, *,
                           ref: str = "", in_reply_to: str = "") -> str:
    """Ask a member to confirm leaving; the request goes to the address itself,
    so a forged From cannot remove anyone. Returns "sent", "not-member" or
    "throttled"."""
    member = members.find(db, forum["id"], address)
    if not member:
        return "not-member"
    if _open_tokens(db, UNSUBSCRIBE, forum["id"], member["address"], now) >= MAX_OUTSTANDING:
        return "throttled"
    lifetime = site.settings.moderation.confirm_seconds
    token = issue_token(db, UNSUBSCRIBE, forum_id=forum["id"], address=member["address"],
                        data={}, now=now, lifetime_seconds=lifetime)
    reply_to = confirm_address(forum, site.settings.domain, token)
    send_template(db, site, "confirm-unsubscribe.txt", to=member["address"],
                  language=member["language"], ref=ref or f"confirm:{_short(token)}", now=now,
                  forum=forum, reply_to=reply_to, in_reply_to=in_reply_to,
                  address=member["address"], confirm_address=reply_to,
                  expires=(now + timedelta(seconds=lifetime)).strftime("%Y-%m-%d %H:%M %Z"))
    return "sent"


def token_purpose(db, token: str) -> str | None:
    """SUBSCRIBE or UNSUBSCRIBE when `token` is one of ours (in any state), else None."""
    for purpose in (SUBSCRIBE, UNSUBSCRIBE):
        try:
            peek_token(db, token, purpose)
        except TokenError:
            continue
        return purpose
    return None


def confirm(db, site, forum: dict, token: str, sender: str, now: datetime, *, ref: str,
            in_reply_to: str = "") -> str | None:
    """Carry out the confirmation `token` sent by `sender`; None when the token
    is not a subscription or unsubscription token.

    Returns what happened: "subscribed", "pending", "unsubscribed", "member",
    "not-member", or a problem: "used", "expired", "wrong-forum",
    "wrong-address". A problem is answered to `sender` and changes nothing.
    """
    purpose = token_purpose(db, token)
    if purpose is None:
        return None
    row = peek_token(db, token, purpose)
    problem = ""
    if row["forum_id"] != forum["id"]:
        problem = "wrong-forum"
    elif row["used_at"]:
        problem = "used"
    elif row["expires_at"] < now.isoformat():
        problem = "expired"
    elif sender.lower() != row["address"]:
        problem = "wrong-address"
    if problem:
        member = members.find(db, forum["id"], sender)
        language = member["language"] if member else row["data"].get("language",
                                                                     forum["language"])
        send_template(db, site, "token-invalid.txt", to=sender, language=language, ref=ref,
                      now=now, forum=forum, in_reply_to=in_reply_to, problem=problem,
                      reason=problem, address=row["address"] if problem == "wrong-address"
                      else "")
        log.info("confirmation for %s on %s from %s refused: %s", row["address"],
                 forum["slug"], sender, problem)
        return problem
    use_token(db, token, purpose, now)
    if purpose == UNSUBSCRIBE:
        if unsubscribe(db, site, forum, row["address"], now, "email", ref=ref,
                       in_reply_to=in_reply_to):
            return "unsubscribed"
        send_template(db, site, "command-results.txt", to=row["address"],
                      language=forum["language"], ref=ref, now=now, forum=forum,
                      in_reply_to=in_reply_to, address=row["address"], unknown=[],
                      languages=list(site.settings.site.languages),
                      results=[result_row("unsubscribe", "not-member")])
        return "not-member"
    return _subscribe_confirmed(db, site, forum, row, now, ref, in_reply_to)


def _subscribe_confirmed(db, site, forum: dict, row: dict, now: datetime, ref: str,
                         in_reply_to: str) -> str:
    options, address = row["data"], row["address"]
    charter = has_charter(forum)
    member = members.find(db, forum["id"], address)
    if member:
        send_template(db, site, "command-results.txt", to=address,
                      language=member["language"], ref=ref, now=now, forum=forum,
                      in_reply_to=in_reply_to, address=address, unknown=[],
                      languages=list(site.settings.site.languages),
                      results=[result_row("subscribe", "already-member")])
        return "member"
    if forum["subscription"] == "approve":
        if charter:
            members.record_event(db, now, forum["id"], "charter-accepted", address,
                                 "confirmed; waiting for a facilitator")
        issue_token(db, APPROVAL, forum_id=forum["id"], address=address,
                    data={**options, "confirmed_at": now.isoformat(),
                          "charter_accepted_at": now.isoformat() if charter else None},
                    now=now, lifetime_seconds=site.settings.moderation.token_seconds)
        send_template(db, site, "subscription-pending.txt", to=address,
                      language=options["language"], ref=ref, now=now, forum=forum,
                      in_reply_to=in_reply_to, address=address, charter_accepted=charter)
        log.info("subscription of %s to %s waits for a facilitator", address, forum["slug"])
        return "pending"
    added = members.add(db, forum["slug"], address, now=now,
                        languages=site.settings.site.languages, name=options.get("name", ""),
                        language=options["language"], mode=options["mode"],
                        profile=options["profile"], region=options.get("region", ""),
                        charter_accepted=charter, how=options.get("how", "email"))
    send_template(db, site, "welcome.txt", to=address, language=added["language"], ref=ref,
                  now=now, forum=forum, in_reply_to=in_reply_to, address=address,
                  member_name=added["name"], mode=added["mode"], profile=added["profile"],
                  member_language=added["language"],
                  charter_accepted_at=(added["charter_accepted_at"] or "")[:16].replace("T", " "))
    log.info("%s joined %s (charter %s)", address, forum["slug"],
             "accepted" if charter else "not required")
    return "subscribed"


def result_row(command: str, code: str, value: str = "", setting: str = "",
               ignored: list[str] | None = None) -> dict:
    """One line of `command-results.txt`: every key is always there."""
    return {"line": command, "code": code, "value": value, "setting": setting,
            "ignored": ignored or []}


def pending_requests(db, forum_id: int, now: datetime) -> list[dict]:
    """Confirmed subscriptions waiting for a facilitator, oldest first."""
    return list(db.query("SELECT id, address, data, created_at, expires_at FROM tokens "
                         "WHERE purpose = ? AND forum_id = ? AND used_at IS NULL AND "
                         "expires_at >= ? ORDER BY id", [APPROVAL, forum_id, now.isoformat()]))


def unsubscribe(db, site, forum: dict, address: str, now: datetime, how: str = "email", *,
                ref: str = "", in_reply_to: str = "", rejoin_address: str = "") -> bool:
    """Remove a member and say goodbye (with `rejoin_address`, one reply to which
    undoes it: leaving.py); False (and no mail) when not a member."""
    member = members.find(db, forum["id"], address)
    if not member:
        return False
    members.remove(db, forum["slug"], member["address"], now=now, how=how)
    send_template(db, site, "goodbye.txt", to=member["address"], language=member["language"],
                  ref=ref or f"goodbye:{forum['id']}:{now.isoformat()}", now=now, forum=forum,
                  in_reply_to=in_reply_to, address=member["address"], how=how,
                  rejoin_address=rejoin_address, reply_to=rejoin_address)
    log.info("%s left %s (%s)", member["address"], forum["slug"], how)
    return True
