"""Hold rules per forum, and senders' standing: what is held beyond the policy.

Each forum carries its rules in its own row (schema 2): what happens to a
non-member's post (`non_member`: hold, reject with a notice, or discard),
how many first posts of a new member are held (`probation`), a size limit
(`max_size`), attachment types and content phrases that hold a post
(`hold_types`, `hold_words`), whether suspected loops are held
(`hold_loops`), a per-member daily post limit (`daily_limit`) and the
emergency switch that holds everything (`emergency`). `senders` records a
sender's standing on a forum: `accept` (never held for who they are),
`hold` (every post of theirs waits for a facilitator: Mailman's moderated
member) or `ban` (their posts are discarded). `apply_rules` is the pipeline's hook
after `policy.decide_post`; every hold it makes says why. Writes `forums`
(rule columns only) and `senders`; reads posts and messages. Will not send
mail: the pipeline carries the decision out.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from datetime import datetime, timedelta

from listserv.errors import ListservError, NotFound
from listserv.intake.commands import fold
from listserv.intake.policy import Decision
from listserv.mail.addresses import AddressError, check
from listserv.mail.text import text_body
from listserv.site import forums, members

log = logging.getLogger(__name__)

NON_MEMBER = ("hold", "reject", "discard")
STANDINGS = ("accept", "ban", "hold")
RULES = ("non_member", "probation", "max_size", "hold_types", "hold_words", "hold_loops",
         "daily_limit", "emergency")
MAX_HOPS = 30  # Received headers: more than this is a message going round in circles
REPEATS = 2  # the same text from the same sender this often within REPEAT_WINDOW: a loop
REPEAT_WINDOW = timedelta(hours=1)
ROBOTS = re.compile(r"^(no-?reply|do-?not-?reply|listserv|majordomo|mailman|owner-.*|"
                    r".*-(request|bounces|owner))$")
ACCEPTED = ("approved", "distributed")  # statuses of posts that went to the members


# -- the rule settings ----------------------------------------------------------------
def _patterns(text: str) -> list[str]:
    return [p for p in re.split(r"[,\s]+", text.lower()) if p]


def _phrases(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.lower().split(",") if p.strip()]


def check_rules(changes: dict) -> dict:
    """Checked, normalised rule values; ListservError names the bad one."""
    unknown = set(changes) - set(RULES)
    if unknown:
        raise ListservError(f"'{sorted(unknown)[0]}' is not a hold rule; rules are "
                            f"{', '.join(RULES)}")
    fields = {}
    for key, value in changes.items():
        if key == "non_member":
            if value not in NON_MEMBER:
                raise ListservError(f"'{value}' is not an action for non-members' posts; "
                                    f"choose one of {', '.join(NON_MEMBER)}")
        elif key in ("probation", "max_size", "daily_limit"):
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value <= 10 ** 9:
                raise ListservError(f"{key.replace('_', ' ')} must be a whole number from 0 "
                                    f"(no limit) up, not {value!r}")
        elif key in ("hold_loops", "emergency"):
            value = int(bool(value))
        elif key == "hold_types":
            patterns = ["*" + p if p.startswith(".") else p for p in _patterns(str(value))]
            for pattern in patterns:
                if not re.fullmatch(r"[a-z0-9*?.+_-]+/[a-z0-9*?.+_-]+|[a-z0-9*?+_-]*"
                                    r"[*.][a-z0-9*?.+_-]*", pattern):
                    raise ListservError(f"'{pattern}' is not an attachment type like "
                                        f"'application/x-msdownload' or a file name like "
                                        f"'*.exe'")
            value = ", ".join(patterns)
        elif key == "hold_words":
            value = ", ".join(_phrases(str(value)))
            if len(value) > 2000:
                raise ListservError("hold words must be under 2000 characters in all")
        fields[key] = value
    return fields


def edit_rules(db, slug: str, changes: dict) -> dict:
    """Change a forum's hold rules; returns the forum as it is afterwards."""
    fields = check_rules(changes)
    with db.atomic():
        forum = forums.get(db, slug)
        if fields:
            db["forums"].update(forum["id"], fields)
    return forums.get(db, slug)


def describe_rules(forum: dict) -> list[str]:
    """The forum's rules in a few words each, for `listserv forum show`."""
    lines = [f"non-members' posts: {forum['non_member']}"]
    if forum["emergency"]:
        lines.insert(0, "EMERGENCY: every post is held")
    if forum["probation"]:
        lines.append(f"first {forum['probation']} posts of new members held")
    if forum["daily_limit"]:
        lines.append(f"more than {forum['daily_limit']} posts a day held")
    if forum["max_size"]:
        lines.append(f"posts over {forum['max_size']} bytes held")
    if forum["hold_types"]:
        lines.append(f"attachments held: {forum['hold_types']}")
    if forum["hold_words"]:
        lines.append(f"phrases held: {forum['hold_words']}")
    lines.append("suspected loops held" if forum["hold_loops"] else "suspected loops pass")
    return lines


# -- senders' standing ----------------------------------------------------------------
def set_standing(db, forum_id: int, address: str, standing: str, *, by: str, via: str,
                 now: datetime, reason: str = "") -> None:
    if standing not in STANDINGS:
        raise ListservError(f"'{standing}' is not a standing; choose one of "
                            f"{', '.join(STANDINGS)}")
    try:
        address = check(address)
    except AddressError as error:
        raise ListservError(str(error)) from None
    db.execute("INSERT OR REPLACE INTO senders (forum_id, address, standing, set_by, set_via, "
               "set_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [forum_id, address, standing, by, via, now.isoformat(), reason[:500]])
    members.record_event(db, now, forum_id, f"sender-{standing}", address, f"{by} ({via})")
    log.info("sender %s is now '%s' on forum %s, set by %s via %s", address, standing,
             forum_id, by, via)


def clear_standing(db, forum_id: int, address: str) -> None:
    cursor = db.execute("DELETE FROM senders WHERE forum_id = ? AND address = ?",
                        [forum_id, address.lower()])
    if not cursor.rowcount:
        raise NotFound(f"{address} has no standing on this forum (see 'listserv sender list')")


def standing_of(db, forum_id: int, address: str | None) -> str | None:
    if not address:
        return None
    row = db.execute("SELECT standing FROM senders WHERE forum_id = ? AND address = ?",
                     [forum_id, address.lower()]).fetchone()
    return row[0] if row else None


def list_standings(db, slug: str | None = None) -> list[dict]:
    sql = ("SELECT f.slug, s.address, s.standing, s.set_by, s.set_via, s.set_at, s.reason "
           "FROM senders s JOIN forums f ON f.id = s.forum_id")
    params = []
    if slug:
        sql += " WHERE f.slug = ?"
        params.append(slug)
    return list(db.query(sql + " ORDER BY f.slug, s.address", params))


# -- the pipeline's hook ----------------------------------------------------------------
def apply_rules(db, site, forum: dict, parsed, row: dict, decision: Decision,
                now: datetime) -> Decision:
    """The forum's hold rules applied after its policy (Extensions.post)."""
    if decision.action in ("ignore", "refuse"):
        return decision
    address = parsed.sender[1] if parsed.sender else None
    standing = standing_of(db, forum["id"], address)
    if standing == "ban":
        return Decision("ignore", f"{address} is banned from this forum", "banned")
    if forum["emergency"]:
        return Decision("hold", "the forum's emergency switch is on: every post is held",
                        "emergency")
    if decision.action == "hold" and decision.rule not in ("moderated", "non-member"):
        return decision  # bulk, ambiguous sender, malformed: a facilitator must look
    facilitator = bool(address) and forums.is_facilitator(db, forum["id"], address)
    member = members.find(db, forum["id"], address) if address else None
    if decision.action == "hold" and not (member or facilitator) and standing != "accept":
        if forum["non_member"] == "reject":
            return Decision("refuse", f"{address} is not a member of this forum, which "
                                      f"accepts posts from its members only", "non-member")
        if forum["non_member"] == "discard":
            return Decision("ignore", f"{address} is not a member (non-members' posts are "
                                      f"discarded on this forum)", "non-member")
    problem = content_problem(db, site, forum, parsed, row, now)
    if problem:
        return Decision("hold", problem[1], problem[0])
    if decision.action == "hold":
        if standing == "accept":
            log.info("message %s on %s: %s is always accepted (%s)", row["id"], forum["slug"],
                     address, decision.reason)
            return Decision("distribute")
        return decision
    if standing == "hold":
        return Decision("hold", f"posts from {address} are held for a facilitator (their "
                                f"standing on this forum)", "sender-hold")
    if facilitator or standing == "accept" or member is None:
        return decision
    return member_problem(db, forum, address, row, now) or decision


def member_problem(db, forum: dict, address: str, row: dict, now: datetime) -> Decision | None:
    """Probation and the daily limit, for a member's post."""
    if forum["probation"]:
        accepted = db.execute(
            f"SELECT count(*) FROM posts WHERE forum_id = ? AND sender = ? AND message_id != ? "
            f"AND status IN ({', '.join('?' * len(ACCEPTED))})",
            [forum["id"], address, row["id"], *ACCEPTED]).fetchone()[0]
        if accepted < forum["probation"]:
            return Decision("hold", f"the first {forum['probation']} posts of a new member "
                                    f"are held ({address} has {accepted} accepted so far)",
                            "probation")
    if forum["daily_limit"]:
        since = (now - timedelta(days=1)).isoformat()
        sent = db.execute(
            "SELECT count(*) FROM posts WHERE forum_id = ? AND sender = ? AND created_at >= ? "
            "AND message_id != ? AND status NOT IN ('ignored', 'refused')",
            [forum["id"], address, since, row["id"]]).fetchone()[0]
        if sent >= forum["daily_limit"]:
            return Decision("hold", f"{address} has sent {sent} posts in 24 hours; the "
                                    f"limit is {forum['daily_limit']} a day", "daily-limit")
    return None


def content_problem(db, site, forum: dict, parsed, row: dict,
                    now: datetime) -> tuple[str, str] | None:
    """(rule, reason) when the message itself must be held, else None."""
    if forum["max_size"] and row["size"] > forum["max_size"]:
        return "size", (f"the message is {row['size']} bytes, more than this forum's limit "
                        f"of {forum['max_size']}")
    patterns = _patterns(forum["hold_types"])
    if patterns:
        found = held_attachment(parsed.message, patterns)
        if found:
            return "attachment", f"it carries an attachment of a held type: {found}"
    text = _text(parsed.message)
    phrases = _phrases(forum["hold_words"])
    if phrases:
        folded = _fold(parsed.subject + "\n" + text)
        for phrase in phrases:
            if re.search(r"(?<!\w)" + re.escape(_fold(phrase)) + r"(?!\w)", folded):
                return "content", f"it contains the phrase '{phrase}', held on this forum"
    digest = _digest(text) if text.strip() else None
    header_id = parsed.message_id or f"listserv-{row['id']}@{site.settings.domain}"
    db.execute("UPDATE posts SET text_digest = ? WHERE forum_id = ? AND header_id = ?",
               [digest, forum["id"], header_id])  # the post's key, as intake/pipeline.py made it
    if forum["hold_loops"]:
        loop = suspected_loop(db, forum, parsed, row, digest, now)
        if loop:
            return "loop", f"suspected mail loop: {loop}"
    return None


def held_attachment(message, patterns: list[str]) -> str:
    """The first part whose type or file name matches a pattern, as 'name (type)'."""
    try:
        for part in message.walk():
            if part.is_multipart():
                continue
            kind = part.get_content_type().lower()
            name = (part.get_filename() or "").lower()
            for pattern in patterns:
                target = kind if "/" in pattern else name
                if target and fnmatch.fnmatchcase(target, pattern):
                    return f"{name or 'unnamed'} ({kind})"
    except Exception:  # hostile structure: the pipeline's own checks deal with it
        return ""
    return ""


def suspected_loop(db, forum: dict, parsed, row: dict, digest: str | None,
                   now: datetime) -> str:
    hops = sum(1 for key, _ in parsed.message.raw_items() if key.lower() == "received")
    if hops > MAX_HOPS:
        return f"it went through {hops} mail servers"
    if parsed.sender is None:
        return ""
    address = parsed.sender[1]
    if ROBOTS.match(address.split("@")[0]):
        return f"it comes from an automatic address ({address})"
    if digest is None:
        return ""
    same = db.execute(
        "SELECT count(*) FROM posts WHERE forum_id = ? AND sender = ? AND created_at >= ? "
        "AND message_id != ? AND text_digest = ?",
        [forum["id"], address, (now - REPEAT_WINDOW).isoformat(), row["id"], digest]
    ).fetchone()[0]
    if same >= REPEATS:
        return f"the same text came from {address} {same} times within the last hour"
    return ""


def _text(message) -> str:
    return text_body(message, limit=200_000) if message is not None else ""


def _digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "replace")).hexdigest()


def _fold(text: str) -> str:
    return " ".join(fold(text).split())
