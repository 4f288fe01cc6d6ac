"""A relay's lowband readers manage themselves by email.

At `listserv@RELAY` a reader writes `unsubscribe`, `set language xx` or
`set budget BYTES` (the command words of listserv/intake/commands.py, in any of
the four languages). Changes of language and budget apply at once and are
answered, in the reader's (new) language, with what was done, so the owner
of an address hears of any change made in its name. Leaving goes through a
confirmation round trip (a reply to `listserv+TOKEN@RELAY`), so a forged
From removes nobody. A confirmed `whatsnew-join@RELAY` makes the reader a
lowband recipient (and a confirmed `whatsnew-leave@` removes them), since at
a relay the bulletin is what the relay dispatches. Writes `relay_recipients`
and `tokens`; answers through notify. Will not answer automatic mail or
this site's own addresses; `get` and `help` stay with lowband.py.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from listserv.delivery.notify import send_template
from listserv.errors import TokenError
from listserv.intake.commands import SETTINGS, fold, parse_commands
from listserv.mail.addresses import classify, normalise
from listserv.mail.message import Parsed
from listserv.mail.text import text_body
from listserv.mail.tokens import issue_token, peek_token, use_token
from relays.recipients import MIN_BUDGET

log = logging.getLogger(__name__)

LEAVE = "relay-leave"
MAX_BUDGET = 10_000_000
BUDGET_WORDS = {"budget", "taille", "size", "tamano", "presupuesto", "tamanho", "orcamento",
                "limite", "bytes", "octets"}
READER_COMMANDS = ("unsubscribe", "set")


def reader_row(db, address: str) -> dict | None:
    rows = list(db.query("SELECT * FROM relay_recipients WHERE profile = 'lowband' AND "
                         "address = ?", [address]))
    return rows[0] if rows else None


def _language(site, row: dict | None, hints) -> str:
    languages = site.settings.site.languages
    for candidate in ([row["language"]] if row else []) + [h for h in hints if h]:
        if candidate in languages:
            return candidate
    return site.settings.site.default_language


def _context(site) -> dict:
    settings = site.settings
    news = getattr(getattr(settings, "whatsnew", None), "address", "") or "whatsnew"
    return {"commands": f"listserv@{settings.domain}",
            "join": f"{news.split('@')[0]}-join@{settings.domain}",
            "languages": list(settings.site.languages), "min_budget": MIN_BUDGET,
            "max_budget": MAX_BUDGET}


def recipient_codes(site, row: dict, local: str) -> list[str]:
    """The codes of the `local+CODE@D` recipients of a message."""
    found = []
    for rcpt in json.loads(row["rcpt_tos"]):
        recipient = classify(normalise(rcpt), site.settings.domain, frozenset({local}))
        if recipient is not None and recipient.kind == "site" and recipient.slug == local \
                and recipient.detail:
            found.append(recipient.detail)
    return found


def has_reader_commands(parsed: Parsed) -> bool:
    commands, _ = parse_commands(parsed.subject, text_body(parsed.message))
    return any(c.name in READER_COMMANDS for c in commands)


def answer(db, site, row: dict, parsed: Parsed, now: datetime) -> bool:
    """Carry out a reader's `unsubscribe` / `set` lines, or a confirmation
    reply; True when the message was one of those (and was answered)."""
    address = parsed.sender[1]
    token = next(iter(recipient_codes(site, row, "listserv")), "")
    if token:
        confirm_leave(db, site, row, parsed, token, now)
        return True
    commands, _ = parse_commands(parsed.subject, text_body(parsed.message))
    mine = [c for c in commands if c.name in READER_COMMANDS]
    if not mine:
        return False
    reader = reader_row(db, address)
    language = _language(site, reader, [c.language for c in commands])
    results = []
    for command in mine[:10]:
        if reader is None:
            results.append({"line": command.line, "code": "not-reader", "value": ""})
        elif command.name == "unsubscribe":
            results.append(ask_leave(db, site, row, parsed, reader, language, command, now))
        else:
            result = change(db, reader, command, site)
            if result["code"] == "set-language":
                language = result["value"]
            reader = reader_row(db, address)
            results.append(result)
    if [r for r in results if r["code"] != "leave-confirm-sent"]:
        send_template(db, site, "relay-reader-results.txt", to=address, language=language,
                      ref=f"reply:{row['id']}:reader", now=now, in_reply_to=parsed.message_id,
                      address=address, results=results, **_context(site))
    log.info("message %s: reader commands of %s: %s", row["id"], address,
             ", ".join(r["code"] for r in results))
    return True


def change(db, reader: dict, command, site) -> dict:
    """`set language xx` or `set budget BYTES` for one reader."""
    words = [w for arg in command.args for w in fold(arg).split("=") if w]
    if len(words) < 2:
        return {"line": command.line, "code": "set-usage", "value": ""}
    key, value = words[0], words[1].strip(".,;")
    if SETTINGS.get(key) == "language":
        if value not in site.settings.site.languages:
            return {"line": command.line, "code": "bad-language", "value": value[:10]}
        db.execute("UPDATE relay_recipients SET language = ? WHERE id = ?", [value, reader["id"]])
        return {"line": command.line, "code": "set-language", "value": value}
    if key in BUDGET_WORDS:
        digits = value.replace(".", "").replace(",", "").replace("_", "")
        if not digits.isdigit() or not MIN_BUDGET <= int(digits) <= MAX_BUDGET:
            return {"line": command.line, "code": "bad-budget", "value": value[:12]}
        db.execute("UPDATE relay_recipients SET budget = ? WHERE id = ?",
                   [int(digits), reader["id"]])
        return {"line": command.line, "code": "set-budget", "value": str(int(digits))}
    return {"line": command.line, "code": "set-usage", "value": ""}


def ask_leave(db, site, row: dict, parsed: Parsed, reader: dict, language: str, command,
              now: datetime) -> dict:
    """Send the confirmation request for leaving (at most 3 waiting at once)."""
    address = reader["address"]
    waiting = db.execute("SELECT count(*) FROM tokens WHERE purpose = ? AND address = ? AND "
                         "used_at IS NULL AND expires_at >= ?",
                         [LEAVE, address, now.isoformat()]).fetchone()[0]
    if waiting < 3:
        lifetime = site.settings.moderation.confirm_seconds
        token = issue_token(db, LEAVE, forum_id=None, address=address,
                            data={"recipient": reader["id"]}, now=now,
                            lifetime_seconds=lifetime)
        confirm = f"listserv+{token}@{site.settings.domain}"
        send_template(db, site, "relay-reader-confirm.txt", to=address, language=language,
                      ref=f"reply:{row['id']}:leave", now=now, reply_to=confirm,
                      in_reply_to=parsed.message_id, address=address, confirm_address=confirm,
                      expires=(now + timedelta(seconds=lifetime)).strftime("%Y-%m-%d %H:%M UTC"))
    return {"line": command.line, "code": "leave-confirm-sent", "value": ""}


def confirm_leave(db, site, row: dict, parsed: Parsed, token: str, now: datetime) -> None:
    address = parsed.sender[1]
    reader = reader_row(db, address)
    language = _language(site, reader, [])
    code = "token-unknown"
    try:
        found = peek_token(db, token, LEAVE)
    except TokenError:
        found = None
    if found is not None:
        if found["address"] != address:
            code = "token-address"
        else:
            try:
                use_token(db, token, LEAVE, now)
            except TokenError as error:
                code = "token-used" if "already" in str(error) else "token-expired"
            else:
                db.execute("DELETE FROM relay_recipients WHERE profile = 'lowband' AND "
                           "address = ?", [address])
                db.execute("UPDATE bulletin_readers SET status = 'optout', at = ? "
                           "WHERE address = ?", [now.isoformat(), address])
                code = "left"
                log.info("%s left the relay's lowband recipients (confirmed)", address)
    send_template(db, site, "relay-reader-results.txt", to=address, language=language,
                  ref=f"reply:{row['id']}:reader", now=now, in_reply_to=parsed.message_id,
                  address=address, results=[{"line": "confirm", "code": code, "value": ""}],
                  **_context(site))


def sync_bulletin_reader(db, site, address: str, now: datetime) -> None:
    """After a whatsnew-join/-leave confirmation at a relay: the bulletin reader's
    choice becomes (or stops being) a lowband recipient of this relay."""
    row = db.execute("SELECT status, language FROM bulletin_readers WHERE address = ?",
                     [address]).fetchone()
    if row is None:
        return
    status, language = row
    if status == "subscribed":
        if language not in site.settings.site.languages:
            language = site.settings.site.default_language
        added = db.execute(
            "INSERT OR IGNORE INTO relay_recipients (profile, address, name, language, budget, "
            "created_at) VALUES ('lowband', ?, '', ?, ?, ?)",
            [address, language, site.settings.delivery.lowband_budget,
             now.isoformat()]).rowcount
        if added:
            log.info("%s joined the bulletin at this relay: a lowband recipient (%s)", address,
                     language)
    else:
        db.execute("DELETE FROM relay_recipients WHERE profile = 'lowband' AND address = ?",
                   [address])
