"""Decisions by reply: mail to FORUM-confirm+TOKEN@D from a facilitator's inbox.

`handle_decision_mail` is the pipeline's confirm handler for decision
tokens (Extensions.confirm). Nothing is done unless every check passes: the
token is one of ours, for this forum, unused and unexpired; the reply's one
From address (the pipeline never passes an ambiguous or automatic one) is a
facilitator of the forum; and, when [moderation] require_authentication is
on, a trusted receiving host's Authentication-Results header says DKIM (or
DMARC) passed for the From domain. The decision word is read by words.py.
A reply that fails a check changes nothing, is logged, and is answered
(the answer goes to the From address, which either is the facilitator or
holds a token only facilitators were sent). A valid token from an address
that is not a facilitator's changes nothing and the facilitators are told,
once per held item and address, in their language, who tried. A decided hold is answered with
who decided it and when. Writes the token's `used_at` and, through
decisions.py and requests.py, the decision itself.
"""

from __future__ import annotations

import logging
from datetime import datetime

import authres

from listserv.delivery.notify import send_template
from listserv.errors import TokenError
from listserv.mail.headers import clean_header_value
from listserv.mail.replies import body_of
from listserv.mail.tokens import peek_token, use_token
from listserv.site import members
from listserv.site.forums import facilitators, is_facilitator
from moderation import holds, requests
from moderation.decisions import carry_out
from moderation.holds import HoldError
from moderation.notices import PURPOSE, when
from moderation.words import read_decision

log = logging.getLogger(__name__)


def authenticated(parsed, address: str, trusted: tuple[str, ...]) -> bool:
    """True when the topmost Authentication-Results of a trusted host says DKIM
    passed for the From domain (or a parent of it), or DMARC passed for it."""
    domain = address.rpartition("@")[2].lower()
    trusted_ids = {host.lower() for host in trusted}
    try:
        values = [value for key, value in parsed.message.raw_items()
                  if key.lower() == "authentication-results"]
    except Exception:
        return False
    for value in values:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(" ".join(str(value)
                                                                              .split()))
        except Exception:  # authres.SyntaxError and anything else hostile text causes
            continue
        if (header.authserv_id or "").lower() not in trusted_ids:
            continue
        for result in header.results:  # the first of our hosts' headers is the one to read
            if result.result.lower() != "pass":
                continue
            if result.method == "dkim":
                signer = (getattr(result, "header_d", None) or "").lower()
                if signer and (domain == signer or domain.endswith("." + signer)):
                    return True
            if result.method == "dmarc":
                shown = [p.value for p in result.properties if (p.type, p.name) ==
                         ("header", "from")]
                if shown and shown[0].lower() == domain:
                    return True
        return False
    return False


BLANK = dict.fromkeys(("kind", "id", "status", "sender", "subject", "decided_by",
                      "decided_via", "decided_at"), "")
ANSWER_DEFAULTS = {"what": BLANK, "decision": "", "reason": "", "told": False, "tried": "",
                   "address": ""}


class Answer:
    """One reply to a facilitator's mail, in the forum's language."""

    def __init__(self, db, site, forum: dict, parsed, message_row_id: int, now: datetime):
        self.db, self.site, self.forum, self.now = db, site, forum, now
        self.parsed, self.row_id = parsed, message_row_id

    def __call__(self, outcome: str, **context) -> None:
        send_template(self.db, self.site, "moderation-reply.txt", to=self.parsed.sender[1],
                      language=self.forum["language"], ref=f"reply:{self.row_id}",
                      now=self.now, forum=self.forum, in_reply_to=self.parsed.message_id,
                      outcome=outcome, **{**ANSWER_DEFAULTS, **context})


def target_of(db, data: dict) -> dict:
    """What a token decides, in the words of the replies: hold or request."""
    if "hold" in data:
        hold = holds.get_hold(db, int(data["hold"]))
        return {"kind": "hold", "id": hold["id"], "status": hold["status"],
                "sender": hold["sender"], "subject": hold["subject"],
                "decided_by": hold["decided_by"] or "", "decided_via": hold["decided_via"] or "",
                "decided_at": when(hold["decided_at"])}
    request = requests.get_request(db, int(data["request"]))
    return {"kind": "request", "id": request["id"],
            "status": "held" if request["status"] == "waiting" else request["status"],
            "sender": request["address"], "subject": "",
            "decided_by": request["decided_by"] or "",
            "decided_via": request["decided_via"] or "", "decided_at": when(request["decided_at"])}


def handle_decision_mail(db, site, forum: dict, token: str, parsed, message_row_id: int,
                         now: datetime) -> bool:
    """Carry out a facilitator's reply to a notice; False when `token` is not a
    decision token (someone else's, or unknown)."""
    try:
        row = peek_token(db, token, PURPOSE)
    except TokenError:
        log.info("message %s to %s-confirm: not a decision token", message_row_id,
                 forum["slug"])
        return False
    if parsed.sender is None or not parsed.answerable:
        log.warning("message %s: decision mail without one plain sender; nothing done",
                    message_row_id)
        return True
    sender = parsed.sender[1]
    answer = Answer(db, site, forum, parsed, message_row_id, now)
    if row["forum_id"] != forum["id"]:
        log.warning("message %s: %s used a decision token of another forum at %s-confirm; "
                    "nothing done", message_row_id, sender, forum["slug"])
        answer("wrong-forum")
        return True
    if not is_facilitator(db, forum["id"], sender):
        log.warning("message %s: %s is not a facilitator of %s; decision refused",
                    message_row_id, sender, forum["slug"])
        answer("not-facilitator", address=sender)
        tell_facilitators(db, site, forum, row, parsed, message_row_id, now)
        return True
    settings = site.settings.moderation
    if settings.require_authentication and not authenticated(parsed, sender,
                                                             settings.trusted_hosts):
        log.warning("message %s: no trusted DKIM/DMARC pass for %s on %s; decision refused",
                    message_row_id, sender, forum["slug"])
        answer("unauthenticated", address=sender)
        return True
    what = target_of(db, row["data"])
    if row["used_at"] or what["status"] != "held":
        log.warning("message %s: %s replayed a decision token for %s %s (%s); nothing done",
                    message_row_id, sender, what["kind"], what["id"],
                    "used" if row["used_at"] else what["status"])
        answer("decided", what=what)
        return True
    if row["expires_at"] < now.isoformat():
        log.warning("message %s: %s used an expired decision token for %s %s",
                    message_row_id, sender, what["kind"], what["id"])
        answer("expired", what=what)
        return True
    reading = read_decision(parsed.subject, body_of(parsed.message, limit=50_000))
    if reading.decision is None:
        log.info("message %s: no decision found in %s's reply (%s)", message_row_id, sender,
                 reading.problem)
        answer(reading.problem, what=what)
        return True
    return decide(db, site, answer, what, token, reading, sender, message_row_id, now)


def tell_facilitators(db, site, forum: dict, row: dict, parsed, message_row_id: int,
                      now: datetime) -> int:
    """Tell each facilitator, in their language, that a non-facilitator used a
    valid decision token; once per facilitator, held item and address.
    Returns how many were told now."""
    try:
        what = target_of(db, row["data"])
    except Exception:  # the item is gone: nothing left to protect
        return 0
    name, sender = parsed.sender
    tried = read_decision(parsed.subject, body_of(parsed.message, limit=50_000)).decision
    told = 0
    for address in facilitators(db, forum["id"]):
        member = members.find(db, forum["id"], address)
        told += send_template(
            db, site, "moderation-decision-refused.txt", to=address,
            language=member["language"] if member else forum["language"],
            ref=f"decision-refused:{what['kind']}:{what['id']}:{sender}", now=now,
            forum=forum, what=what, address=sender, sender_name=clean_header_value(name, 80),
            decision=tried or "", at=when(now))
    if told:
        log.warning("message %s: facilitators of %s told that %s tried to decide %s %s",
                    message_row_id, forum["slug"], sender, what["kind"], what["id"])
    return told


def decide(db, site, answer: Answer, what: dict, token: str, reading, sender: str,
           message_row_id: int, now: datetime) -> bool:
    """Spend the token and carry the decision out, or neither."""
    try:
        with db.atomic():
            use_token(db, token, PURPOSE, now)
            if what["kind"] == "hold":
                result = carry_out(db, site, what["id"], reading.decision, by=sender,
                                   via="email", now=now, reason=reading.reason)
            else:
                result = requests.decide_request(db, site, what["id"], reading.decision,
                                                 by=sender, via="email", now=now,
                                                 reason=reading.reason)
    except HoldError as error:
        log.info("message %s: %s's decision not carried out: %s", message_row_id, sender,
                 error)
        now_what = target_of(db, {what["kind"]: what["id"]})
        answer("decided" if now_what["status"] != "held" else "cannot", what=now_what,
               tried=str(error))
        return True
    if not result["changed"]:
        answer("decided", what=target_of(db, {what["kind"]: what["id"]}))
        return True
    answer("done", what={**what, "status": result["status"]}, decision=reading.decision,
           reason=reading.reason, told=bool(result.get("told")))
    return True
