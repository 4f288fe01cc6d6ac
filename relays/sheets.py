"""Translators' replies: reading a filled sheet and writing what it fills.

A sheet lists segments as `[N]` lines followed by the text to translate. A
reply keeps the numbers: each `[N]` at the start of a line begins the
translation of segment N, which runs until the next number (`[N] =` means
"the same as the original"). Quoted lines (`>`) are not read, except that a
quoted `[N]` followed by unquoted text (a reply written between the quoted
segments) counts as segment N. Reading stops at a signature (`-- `) or a
forwarded original; an attribution line ("... wrote:") ends the current
segment. `apply_reply` fills the segments and the memory in one
transaction and says what was accepted, what is missing, what came back
unchanged and which numbers are not on the sheet; `handle_sheet_mail`
answers the translator with that. The operator's `translation submit` uses
the same reader. Writes `translation_segments`, `translation_memory`,
`translation_sheets`; answers through notify.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from listserv.delivery.notify import send_template
from listserv.errors import ListservError, NotFound, TokenError
from listserv.mail.message import Parsed, text_body
from listserv.mail.tokens import peek_token
from relays.translation import complete_if_done, normalise, remember, sheet_context

log = logging.getLogger(__name__)

_MARK = re.compile(r"^\s*\[(\d{1,4})\]\s?(.*)$")
_QUOTED_MARK = re.compile(r"^\s*>[>\s]*\[(\d{1,4})\]")
_ATTRIBUTION = re.compile(r"(wrote|a écrit|a ecrit|escribió|escribio|escreveu|schrieb)\s*:\s*$",
                          re.IGNORECASE)
_FORWARDED = re.compile(r"^\s*(-{2,}\s*(original message|message d'origine|mensaje original|"
                        r"mensagem original|forwarded message)\s*-{2,}|_{8,}|"
                        r"begin forwarded message:?)\s*$", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s*$")
MAX_LINES = 5000


@dataclass
class Reply:
    """What a reply holds, by segment number."""

    texts: dict[int, str] = field(default_factory=dict)
    same: set[int] = field(default_factory=set)


def read_reply(body: str) -> Reply:
    """The numbered translations in a reply (see the module's docstring)."""
    reply = Reply()
    current: int | None = None
    typed: set[int] = set()  # numbers the translator wrote unquoted
    lines: dict[int, list[str]] = {}
    for raw in body.replace("\r\n", "\n").split("\n")[:MAX_LINES]:
        line = raw.rstrip()
        if _SIGNATURE.match(line) or _FORWARDED.match(line):
            break
        quoted = _QUOTED_MARK.match(line)
        if quoted:
            number = int(quoted.group(1))
            current = number if number not in typed else None
            continue
        if line.lstrip().startswith(">"):
            continue
        if _ATTRIBUTION.search(line):
            current = None
            continue
        mark = _MARK.match(line)
        if mark:
            current = int(mark.group(1))
            typed.add(current)
            lines[current] = [mark.group(2)]
            continue
        if current is not None:
            lines.setdefault(current, []).append(line)
    for number, chunk in lines.items():
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(chunk)).strip()
        if text == "=":
            reply.same.add(number)
        elif text:
            reply.texts[number] = text
    return reply


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
    segments = {row["number"]: row for row in db.query(
        "SELECT * FROM translation_segments WHERE publication_id = ? AND language = ?",
        [sheet["publication_id"], sheet["language"]])}
    on_sheet = {n for n, row in segments.items() if row["status"] in ("open", "original",
                                                                      "translated")}
    outcome = Outcome(sheet=sheet, late=sheet["status"] in ("expired",))
    for number in sorted(set(reply.texts) | reply.same):
        row = segments.get(number)
        if row is None or number not in on_sheet:
            outcome.unknown.append(number)
            continue
        text = row["source"] if number in reply.same else reply.texts[number]
        if number not in reply.same and normalise(text) == normalise(row["source"]):
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
    outcome = apply_reply(db, site, sheet_id, text_body(parsed.message), sender, now)
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
