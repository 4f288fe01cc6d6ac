"""The SMTP/LMTP edge: decide at RCPT, store at DATA, answer.

The handler is thin on purpose. RCPT refuses what is not ours (550: no open
relay, no unknown forums). DATA commits the raw bytes through the store's
writer and answers 250 only after the commit is on disk; any failure we did
not foresee (a locked database, a full disk) is a temporary 451, so the
sender keeps the message and tries again. The size limit is aiosmtpd's
`data_size_limit` (552). Reads the forums table; writes `messages` only.
Everything else happens later, in the pipeline (`pipeline.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from listserv.intake.limits import Gate, limited
from listserv.intake.tls import IntakeTls, starttls_rules
from listserv.intake.tokened import CHECKS
from listserv.mail.addresses import classify, normalise
from listserv.mail.lineends import normalise_line_ends

log = logging.getLogger(__name__)

FORUM_KINDS = ("post", "request", "join", "leave", "owner", "confirm", "bounces")


def store_incoming(db, raw: bytes, mail_from: str, rcpt_tos: list[str], now: datetime) -> int:
    """Keep an accepted message; the pipeline picks it up by its status.
    (Plain SQL: sqlite-utils' `insert` reads the table's schema on every call,
    a tenth of a millisecond or two that intake pays for every message.)
    Bare-LF line ends are made CRLF first (`lineends`), as Postfix does."""
    raw = normalise_line_ends(bytes(raw))
    return db.execute(
        "INSERT INTO messages (received_at, mail_from, rcpt_tos, raw, size, status) "
        "VALUES (?, ?, ?, ?, ?, 'received')",
        [now.isoformat(), mail_from or "", json.dumps(rcpt_tos), raw, len(raw)]).lastrowid


@dataclass
class Intake:
    """aiosmtpd handler; `wake` is called after each stored message."""

    site: object
    wake: Callable[[], None] = lambda: None
    lmtp: bool = False
    site_addresses: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        settings = self.site.settings
        self.domain = settings.domain
        self.max_recipients = settings.smtp.max_recipients

    def forum_id(self, slug: str) -> int | None:
        row = self.site.db.execute("SELECT id FROM forums WHERE slug = ?", [slug]).fetchone()
        return row[0] if row is not None else None

    def accepts(self, address: str, mail_from: str = "",
                now: datetime | None = None) -> tuple[bool, str]:
        """(True, '') for an address we take mail for, else (False, the reply).
        An address with a code must carry one we can still act on (`tokened`)."""
        value = normalise(address)
        shown = address if len(address) <= 100 else address[:100] + "..."
        if value.rpartition("@")[2] != self.domain:
            return False, f"550 5.7.1 <{shown}>: relaying denied; this server only " \
                          f"takes mail for {self.domain}"
        recipient = classify(value, self.domain, self.site_addresses)
        if recipient is None:
            return False, f"550 5.1.1 <{shown}>: no such forum or address here"
        forum_id = None
        if recipient.kind == "bounces" and recipient.slug == "listserv":
            return True, ""
        if recipient.kind != "site":
            forum_id = self.forum_id(recipient.slug)
            if forum_id is None:
                return False, f"550 5.1.1 <{shown}>: no forum '{recipient.slug[:64]}' here"
        checker = CHECKS.get(recipient.kind)
        if checker is not None:
            reply = checker(self.site.db, self.site.secret, recipient, forum_id, mail_from,
                            now or datetime.now(timezone.utc), address=shown)
            if reply:
                return False, reply
        return True, ""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if not address.isascii() and not envelope.smtp_utf8:  # RFC 6531 3.5
            return "553 5.6.7 Non-ASCII addresses need the SMTPUTF8 parameter " \
                   "(MAIL FROM:<...> SMTPUTF8)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if not address.isascii() and not envelope.smtp_utf8:
            return "553 5.6.7 Non-ASCII addresses need the SMTPUTF8 parameter on MAIL FROM"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients; send the rest in another message"
        try:
            ok, reply = self.accepts(address, envelope.mail_from or "")
        except Exception:
            log.exception("checking recipient %r failed", address)
            return "451 4.3.0 Cannot check this recipient now; please try again later"
        if not ok:
            log.info("refused recipient %r from %r: %s", address, envelope.mail_from, reply)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        now = datetime.now(timezone.utc)
        try:
            message_id = await self.site.write(store_incoming, raw, envelope.mail_from or "",
                                               list(envelope.rcpt_tos), now, priority=0)
        except Exception as error:  # answered, not raised: aiosmtpd then ends the
            reply = await self.handle_exception(error)  # transaction (MAIL may follow)
        else:
            log.info("accepted message %s from %r for %s (%d bytes)", message_id,
                     envelope.mail_from, ", ".join(envelope.rcpt_tos), len(raw))
            self.wake()
            reply = f"250 2.0.0 Queued as {message_id}"
        if self.lmtp:  # LMTP answers once per recipient, a refusal too
            return "\r\n".join([reply] * len(envelope.rcpt_tos))
        return reply

    async def handle_exception(self, error):
        log.error("intake failed: %s: %s", type(error).__name__, error)
        return "451 4.3.0 Could not store the message; please try again later"


async def start_intake(site, host: str, port: int, wake: Callable[[], None],
                       site_addresses: frozenset[str] = frozenset(),
                       tls: IntakeTls | None = None) -> asyncio.AbstractServer:
    """Listen for SMTP (or LMTP) on host:port; returns the asyncio server. Each
    connection takes `tls`'s context as it is then (see `IntakeTls.reload`)."""
    settings = site.settings
    lmtp = settings.smtp.protocol == "lmtp"
    handler = Intake(site, wake=wake, lmtp=lmtp, site_addresses=site_addresses)
    protocol = limited(starttls_rules(LMTP if lmtp else SMTP))
    smtp = settings.smtp
    tls = tls or IntakeTls(site)
    gate = Gate(smtp.max_connections, smtp.max_per_ip)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: protocol(handler, gate=gate, command_timeout=smtp.seconds("command_timeout"),
                         transaction_timeout=smtp.seconds("transaction_timeout"),
                         data_size_limit=smtp.max_message_size, enable_SMTPUTF8=True,
                         hostname=settings.domain, ident="listserv ESMTP",
                         tls_context=tls.context,
                         require_starttls=smtp.require_tls and tls.context is not None),
        host, port)
