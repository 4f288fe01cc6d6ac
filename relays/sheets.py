"""Translators' replies: reading a filled sheet and writing what it fills.

A sheet lists segments as `[N]` lines followed by the text to translate,
numbered 1..n as the sheet shows them (`sheet_number`, see translation.py);
every number here, read or answered, is that one. A reply keeps the numbers:
each `[N]` at the start of a line begins the translation of segment N, which runs until the next number (`[N] =` means
"the same as the original", a name say: the translator's word, remembered
so that it is not asked again). Only what the translator wrote is read, as
the reply reader (listserv/mail/replies.py) finds it: no quoted lines,
attribution lines, forwarded or unquoted originals, signatures (with or
without `-- `) or closing courtesies ("Merci, Marie"). Only numbered
segments are taken: text before the first number is not read, and the
segment written last keeps no more paragraphs than its source has, so what
follows it is not taken. A quoted `[N]` followed by unquoted text (a reply
written between the quoted segments) counts as segment N. A segment that
looks unchanged from its source (case, spacing and punctuation aside)
without `=` is not a translation: it stays open and is not remembered.
`apply_reply` fills the segments and the memory in one transaction and
says what was accepted, what is missing, what came back unchanged and
which numbers are not on the sheet; `handle_sheet_mail` answers the
translator with that. The operator's `translation submit` uses the same
reader. Writes `translation_segments`, `translation_memory`,
`translation_sheets`; answers through notify.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.errors import ListservError, NotFound, TokenError
from listserv.mail.message import Parsed
from listserv.mail.replies import body_of, read_text
from listserv.mail.tokens import peek_token
from relays.translation import (by_sheet_number, complete_if_done, normalise, remember,
                                sheet_context)

log = logging.getLogger(__name__)

_MARK = re.compile(r"^\s*\[(\d{1,4})\]\s?(.*)$")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
MAX_LINES = 5000


@dataclass
class Reply:
    """What a reply holds, by segment number; `last` is the segment written last."""

    texts: dict[int, str] = field(default_factory=dict)
    same: set[int] = field(default_factory=set)
    last: int | None = None


def read_reply(body: str) -> Reply:
    """The numbered translations in a reply (see the module's docstring)."""
    reply = Reply()
    typed: set[int] = set()  # numbers the translator wrote unquoted
    lines: dict[int, list[str]] = {}
    for block in read_text(body, closing=True, max_lines=MAX_LINES).blocks:
        current = _answered(block.quoted, typed)
        for line in block.lines:
            mark = _MARK.match(line)
            if mark:
                current = int(mark.group(1))
                typed.add(current)
                lines[current] = [mark.group(2)]
            elif current is not None:
                lines.setdefault(current, []).append(line)
            else:
                continue
            reply.last = current
    for number, chunk in lines.items():
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(chunk)).strip()
        if text == "=":
            reply.same.add(number)
        elif text:
            reply.texts[number] = text
    return reply


def _answered(quoted: tuple[str, ...], typed: set[int]) -> int | None:
    """The segment a block written under a quoted `[N]` answers, if any."""
    for line in reversed(quoted):
        mark = _MARK.match(line)
        if mark:
            number = int(mark.group(1))
            return number if number not in typed else None
    return None


def looks_unchanged(text: str, source: str) -> bool:
    """True when a 'translation' is the source again (case, spacing and
    punctuation aside)."""
    def key(value: str) -> str:
        return re.sub(r"[\W_]+", "", normalise(value).casefold())
    return key(text) == key(source)


def within_source(text: str, source: str) -> str:
    """The last segment's text without paragraphs beyond the source's count:
    what follows the last segment is not its translation."""
    wanted = len([p for p in _PARAGRAPHS.split(source.strip()) if p.strip()]) or 1
    kept = [p for p in _PARAGRAPHS.split(text.strip()) if p.strip()][:wanted]
    return "\n\n".join(kept)


@dataclass
class Outcome:
    """What a reply did to a sheet, for the answer and the command line."""

    sheet: dict
    accepted: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    complete: bool = False
    late: bool = False

    @property
    def found_nothing(self) -> bool:
        return not (self.accepted or self.unchanged or self.unknown)

    def as_dict(self) -> dict:
        return {"sheet": self.sheet["id"], "language": self.sheet["language"],
                "accepted": self.accepted, "unchanged": self.unchanged,
                "unknown": self.unknown, "missing": self.missing,
                "complete": self.complete, "late": self.late}


def apply_reply(db, site, sheet_id: int, body: str, by: str, now: datetime) -> Outcome:
    """Fill a sheet's segments (and the memory) from a reply's text."""
    sheet = db["translation_sheets"].get(sheet_id)
    reply = read_reply(body)
    segments = by_sheet_number(db.query(
        "SELECT * FROM translation_segments WHERE publication_id = ? AND language = ?",
        [sheet["publication_id"], sheet["language"]]))
    on_sheet = {n for n, row in segments.items() if row["status"] in ("open", "original",
                                                                      "translated")}
    outcome = Outcome(sheet=sheet, late=sheet["status"] in ("expired",))
    for number in sorted(set(reply.texts) | reply.same):
        row = segments.get(number)
        if row is None or number not in on_sheet:
            outcome.unknown.append(number)
            continue
        if number in reply.same:  # "[N] =": the translator says it stays as it is
            text = row["source"]
        else:
            text = reply.texts[number]
            if number == reply.last:
                text = within_source(text, row["source"])
        if number not in reply.same and looks_unchanged(text, row["source"]):
            outcome.unchanged.append(number)
            continue
        db["translation_segments"].update(row["id"], {
            "text": text, "filled_by": by[:200], "filled_at": now.isoformat(),
            "status": "translated"})
        remember(db, row["source_language"], sheet["language"], row["source"], text, now)
        outcome.accepted.append(number)
    outcome.missing = [n for n, row in sorted(segments.items())
                       if row["status"] == "open" and n not in outcome.accepted]
    outcome.complete = complete_if_done(db, site, sheet_id, now)
    outcome.sheet = db["translation_sheets"].get(sheet_id)
    log.info("sheet %s (%s) from %s: %d accepted, %d missing, %d unchanged, %d unknown",
             sheet_id, sheet["language"], by, len(outcome.accepted), len(outcome.missing),
             len(outcome.unchanged), len(outcome.unknown))
    return outcome


def sheet_for_code(db, code: str) -> int:
    """The sheet a reply address's code belongs to; TokenError when none."""
    row = peek_token(db, code, "translation-sheet")
    return int(row["data"]["sheet"])


def handle_sheet_mail(db, site, row: dict, parsed: Parsed | None, code: str,
                      now: datetime) -> None:
    """A translator's reply to relay+CODE@domain: fill the sheet, answer once."""
    if parsed is None or not parsed.answerable:
        log.info("message %s to a sheet address is automatic or unreadable; not read",
                 row["id"])
        return
    try:
        sheet_id = sheet_for_code(db, code)
    except TokenError as error:
        log.info("message %s: sheet code refused: %s", row["id"], error)
        return
    sender = parsed.sender[1]
    outcome = apply_reply(db, site, sheet_id, body_of(parsed.message), sender, now)
    publication = db["relay_publications"].get(outcome.sheet["publication_id"])
    context = sheet_context(db, outcome.sheet, publication)
    send_template(db, site, "translation-reply.txt", to=sender,
                  language=outcome.sheet["language"], ref=f"reply:{row['id']}:sheet{sheet_id}",
                  now=now, in_reply_to=parsed.message_id,
                  reply_to=_reply_address(parsed, site), outcome=outcome.as_dict(),
                  malformed=outcome.found_nothing, **context)


def _reply_address(parsed: Parsed, site) -> str:
    """The sheet's own address, so a second reply fills the same sheet."""
    for name in ("To", "Cc", "Delivered-To"):
        value = parsed.header(name).lower()
        match = re.search(r"relay\+[0-9a-f]{16,64}@" + re.escape(site.settings.domain.lower()),
                          value)
        if match:
            return match.group(0)
    return ""


def submit_file(db, site, sheet_id: int, text: str, by: str, now: datetime) -> Outcome:
    """`listserv translation submit ID FILE`."""
    if db.execute("SELECT 1 FROM translation_sheets WHERE id = ?", [sheet_id]).fetchone() \
            is None:
        raise NotFound(f"translation sheet {sheet_id} does not exist "
                       f"(see 'listserv translation list')")
    outcome = apply_reply(db, site, sheet_id, text, by, now)
    if outcome.found_nothing:
        raise ListservError(f"no numbered segment found in the file: each translation starts "
                            f"with its number in square brackets, e.g. '[1] ...' (see "
                            f"'listserv translation show {sheet_id}')")
    return outcome
