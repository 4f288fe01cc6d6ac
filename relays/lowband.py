"""Low-bandwidth email at a relay: plain text under a byte budget, and `get REF`.

`lowband_parts` renders a publication's view with the `lowband-publication`
template, wraps it at 72 columns and cuts it into numbered parts, each a
whole message (headers included) of at most the recipient's budget: plain
text, no attachments, every web link already a reference (`[L12]`).
`answer_commands` answers mail to `listserv@RELAY`: `get REF` returns the
relay's copy of an item or a link, in the reader's language and under
their budget, and anything else gets the usage. Writes `bodies` and
`deliveries` (through the queue); reads recipients, links and segments.
"""

from __future__ import annotations

import logging
import quopri
from datetime import datetime

from listserv.delivery.dkim import signature_room
from listserv.delivery.queue import queue_message
from listserv.intake.commands import parse_commands
from listserv.mail.compose import compose, to_bytes
from listserv.mail.headers import clean_header_value
from listserv.mail.message import Parsed
from listserv.mail.replies import body_of
from listserv.mail.templates import render_mail
from relays.render import find_item, flowed, load_view, wrap

log = logging.getLogger(__name__)

MIN_ROOM = 300
MAX_GETS = 10


def command_address(site) -> str:
    return f"listserv@{site.settings.domain}"


def _headers(site) -> dict:
    domain = site.settings.domain
    commands = command_address(site)
    return {"Auto-Submitted": "auto-generated", "Precedence": "bulk",
            "X-Auto-Response-Suppress": "All", "List-Id": f"<publications.{domain}>",
            "List-Help": f"<mailto:{commands}?subject=help>",
            "List-Unsubscribe": f"<mailto:{commands}?subject=unsubscribe>"}


def _cost(text: str) -> int:
    """Bytes a text takes in a quoted-printable body, with CRLF line ends."""
    encoded = quopri.encodestring(text.encode("utf-8"))
    return len(encoded) + encoded.count(b"\n")


def _pack(blocks: list[str], room: int) -> list[str]:
    """Blocks (paragraphs) into chunks of at most `room` encoded bytes; a block
    too big for one chunk is cut at line ends, a line too long at a space (or,
    for one word longer than that, at its middle)."""
    chunks, current, used = [], [], 0
    for block in blocks:
        pieces = [block]
        if _cost(block + "\n\n") > room:
            pieces = []
            for line in block.split("\n"):
                while _cost(line + "\n") > room:
                    cut = max(1, len(line) * room // (2 * _cost(line + "\n")))
                    space = line.rfind(" ", 0, cut)
                    cut = space + 1 if space > cut // 2 else cut
                    pieces.append(line[:cut])
                    line = line[cut:]
                pieces.append(line)
        for piece in pieces:
            cost = _cost(piece + "\n\n")
            if current and used + cost > room:
                chunks.append("\n\n".join(current))
                current, used = [], 0
            current.append(piece)
            used += cost
    if current:
        chunks.append("\n\n".join(current))
    return chunks or [""]


def split_footer(text: str) -> tuple[str, str]:
    """(body, footer): the footer is what follows the last '--' line."""
    text = text.strip("\n")
    head, sep, footer = text.rpartition("\n--\n")
    if not sep or not head.strip():
        return text, ""
    return head, "--\n" + footer.strip("\n")


def build_part(site, *, to: str, subject: str, text: str, now: datetime,
               in_reply_to: str = "") -> bytes:
    """One plain-text part, format=flowed (RFC 3676), addressed to its reader."""
    settings = site.settings
    sender = f"{clean_header_value(settings.site.name, 100)} <{command_address(site)}>"
    message = compose(sender=sender, to=to, subject=subject, text=flowed(text) + "\n",
                      domain=settings.domain, headers=_headers(site),
                      in_reply_to=in_reply_to, now=now)
    message.set_param("format", "flowed")
    return to_bytes(message)


def plan_parts(site, *, to: str, subject: str, text: str, budget: int, now: datetime,
               in_reply_to: str = "") -> list[tuple[str, str]]:
    """(subject, text) of each part of `text` so that each, sent to `to` (or to
    any shorter address), is at most `budget` bytes; numbered '(1/3)' in the
    subject and '[1/3]' on top when there are several. The footer (after the
    last '--' line) ends the last part, which always has text of its own."""
    body, footer = split_footer(text)
    blocks = [b.strip("\n") for b in body.split("\n\n") if b.strip()]

    def build(part: str, subject_line: str) -> bytes:
        return build_part(site, to=to, subject=subject_line, text=part, now=now,
                          in_reply_to=in_reply_to)

    signed = signature_room(site.settings)  # added at hand-over, to every copy
    overhead = len(build("", subject + " (99/99)")) + len("[99/99]\n\n") + 40 + signed
    reserve = _cost(flowed(footer) + "\n\n") if footer else 0

    def planned(room: int) -> list[tuple[str, str]]:
        chunks = _pack(blocks, room)
        if footer:  # the footer goes with the last chunk, never alone
            if _cost(flowed(chunks[-1]) + "\n\n") + reserve > room:
                chunks = _pack(blocks, room - reserve) if len(chunks) == 1 else \
                    chunks[:-1] + _pack(chunks[-1].split("\n\n"), room - reserve)
            chunks[-1] = chunks[-1] + "\n\n" + footer
        total = len(chunks)
        return [(subject, chunk) if total == 1 else
                (f"{subject} ({n}/{total})", f"[{n}/{total}]\n\n{chunk}")
                for n, chunk in enumerate(chunks, 1)]

    room = budget - overhead
    for _ in range(8):
        if room - reserve < MIN_ROOM:
            break
        plan = planned(room)
        over = max(len(build(part, line)) for line, part in plan) + signed - budget
        if over <= 0:
            return plan
        room -= over + 16
    # The headers and signatures alone (about `overhead` bytes) leave the budget
    # no room: the smallest parts that still carry text, rather than none.
    log.warning("a budget of %d bytes is too small for %s's copies, whose headers and "
                "DKIM signatures take about %d bytes: sent in parts of about %d bytes",
                budget, to, overhead, overhead + MIN_ROOM + reserve)
    return planned(MIN_ROOM + reserve)


def split_message(site, *, to: str, subject: str, text: str, budget: int, now: datetime,
                  in_reply_to: str = "") -> list[bytes]:
    """`text` as one or more plain-text messages to `to` of at most `budget` bytes."""
    return [build_part(site, to=to, subject=line, text=part, now=now, in_reply_to=in_reply_to)
            for line, part in plan_parts(site, to=to, subject=subject, text=text,
                                         budget=budget, now=now, in_reply_to=in_reply_to)]


def lowband_plan(site, view: dict, budget: int, now: datetime,
                 longest: str) -> list[tuple[str, str]]:
    """A publication for lowband readers in the view's language, planned in parts
    that fit `budget` for any address up to `longest`."""
    subject, body = render_mail(site.active_templates, "lowband-publication.txt",
                                view["language"], **_context(site), view=view)
    return plan_parts(site, to=longest, subject=subject, text=body, budget=budget, now=now)


def lowband_parts(site, view: dict, budget: int, now: datetime,
                  to: str = "") -> list[bytes]:
    """A publication for one lowband reader (`to`), in parts of at most `budget`."""
    to = to or command_address(site)
    return [build_part(site, to=to, subject=line, text=part, now=now)
            for line, part in lowband_plan(site, view, budget, now, to)]


def _context(site) -> dict:
    settings = site.settings
    return {"site": {"name": settings.site.name, "domain": settings.domain,
                     "postmaster": f"postmaster@{settings.domain}"},
            "commands": command_address(site), "whatsnew": f"whatsnew@{settings.domain}",
            "domain": settings.domain}


# -- get REF -------------------------------------------------------------------
def lookup(db, ref: str, language: str) -> dict | None:
    """What `get REF` returns: the item (and the link, for a link's ref)."""
    ref = ref.strip().strip(".,;:()[]<>\"'").upper()
    rows = list(db.query("SELECT * FROM relay_links WHERE ref = ?", [ref]))
    if not rows:
        return None
    link = rows[0]
    publication = db["relay_publications"].get(link["publication_id"])
    view = load_view(db, publication, language)
    item = find_item(view, link["path"])
    if item is None:
        return None
    return {"ref": ref, "url": link["url"], "item": item, "view": view}


def reader(db, site, address: str) -> tuple[str, int]:
    """(language, budget) of a lowband recipient, else the site's defaults."""
    row = db.execute("SELECT language, budget FROM relay_recipients WHERE profile = 'lowband' "
                     "AND address = ?", [address]).fetchone()
    if row:
        return row[0], row[1] or site.settings.delivery.lowband_budget
    return site.settings.site.default_language, site.settings.delivery.lowband_budget


def answer_commands(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """Mail to listserv@RELAY: `get REF` lines (and `help`), answered once."""
    if parsed is None or not parsed.answerable:
        log.info("message %s to %s is automatic or unreadable; not answered", row["id"],
                 command_address(site))
        return
    address = parsed.sender[1]
    if address.endswith("@" + site.settings.domain.lower()):
        return
    commands, _unknown = parse_commands(parsed.subject, body_of(parsed.message))
    language, budget = reader(db, site, address)
    for command in commands:
        if command.language and not db.execute(
                "SELECT 1 FROM relay_recipients WHERE address = ?", [address]).fetchone():
            language = command.language
            break
    asked = [c.args[0] for c in commands if c.name == "get" and c.args][:MAX_GETS]
    found, missing = [], []
    for ref in asked:
        hit = lookup(db, ref, language)
        if hit:
            found.append(hit)
        else:
            missing.append(clean_header_value(ref, 40))
    subject, body = render_mail(site.active_templates, "lowband-get.txt", language,
                                **_context(site), found=found, missing=missing,
                                asked=bool(asked))
    parts = split_message(site, to=address, subject=subject, text=body, budget=budget,
                          now=now, in_reply_to=parsed.message_id)
    sender = f"listserv-bounces@{site.settings.domain}"
    for number, data in enumerate(parts, 1):
        queue_message(db, f"reply:{row['id']}:get:{number}", data, [address], sender, now)
    log.info("message %s: get %s answered for %s (%d found, %d parts)", row["id"],
             ", ".join(asked) or "(help)", address, len(found), len(parts))


def fetch(db, site, ref: str, language: str) -> tuple[str, str] | None:
    """The same copy for the command hook of forum request addresses."""
    hit = lookup(db, ref, language)
    if hit is None:
        return None
    subject, body = render_mail(site.active_templates, "lowband-get.txt", language,
                                **_context(site), found=[hit], missing=[], asked=True)
    return subject, wrap(body)
