"""The engine's hand-over step: one claimed group handed to its destination.

`Handing` is the part of the delivery `Engine` (`engine.py`) that runs one
transaction: it skips a destination that is down, prepares the body as it
goes out (a Date and Message-ID when missing, CRLF and a DKIM signature
when a key is set, a personal copy's unsubscribe headers and VERP sender),
and hands it to the handover (`handover.py`: SMTP in a process of its own
or here) or writes it into the outbox Maildir. How each recipient ended is
turned into an `Outcome` (`settling.py`), to be written. Reads the body
cache and the destinations' health; writes no rows itself. Will not claim
or settle rows.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time

from listserv.mail.tokens import verp_sender
from listserv.delivery.dkim import crlf
from listserv.delivery.handover import Skipped, personal_copy
from listserv.delivery.outcomes import Outcome
from listserv.delivery.rows import Body, Group
from listserv.delivery.settling import by_row
from listserv.delivery.smtpout import MAILDIR, Unavailable, write_outbox
from listserv.mail.addresses import is_address
from listserv.mail.tokens import short_mac, sign_link
from listserv.site.faults import log_failure

log = logging.getLogger(__name__)


def personal_headers(secret: bytes, web_url: str, slug: str, domain: str,
                     recipient: str) -> bytes:
    """The recipient's own RFC 2369/8058 unsubscribe headers, as header lines."""
    mailto = f"<mailto:{slug}-leave+{short_mac(secret, 'leave', slug, recipient)}@{domain}>"
    if not web_url:
        return f"List-Unsubscribe: {mailto}\r\n".encode("utf-8")
    token = sign_link(secret, "u", slug, recipient)
    link = f"<{web_url.rstrip('/')}/unsubscribe/{token}>"
    return (f"List-Unsubscribe: {link},\r\n {mailto}\r\n"
            f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode("utf-8")



class Handing:
    """One group's transaction for the `Engine`, on the engine's own state."""

    # -- one group -----------------------------------------------------------------
    async def deliver(self, group: Group) -> None:
        body = None
        try:
            body = await self._body(group.body_id)
            outcome = await self.attempt(group, body)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the message's own problem: a few tries, then set aside
            log_failure(log, error, "delivering body %s failed", group.body_id)
            outcome = Outcome(forum_id=body.forum_id if body else None, internal=True)
            outcome.defer(group.ids, f"internal error: {type(error).__name__}: {error}")
        if outcome.deferred or outcome.bounced or outcome.failed:
            log.info("body %s via %s: %d sent, %d deferred, %d bounced, %d failed (%s)",
                     group.body_id, group.destination, len(outcome.sent),
                     sum(map(len, outcome.deferred.values())), len(outcome.bounced),
                     sum(map(len, outcome.failed.values())),
                     next(iter(outcome.deferred), "") or next(iter(outcome.failed), "")
                     or (outcome.bounced[0][3] if outcome.bounced else ""))
        # The worker is free for its next transaction while the outcome is written,
        # at once and on its own (the store commits the writes waiting together);
        # until it commits, the rows stay 'sending' and no claim takes them.
        self.unrecorded += 1
        task = asyncio.create_task(self._record(outcome, len(group.recipients)))
        self.recording.add(task)
        task.add_done_callback(self.recording.discard)

    async def attempt(self, group: Group, body: Body | None) -> Outcome:
        outcome = Outcome(forum_id=body.forum_id if body else None)
        now = self.clock()
        until, why = self.down.get(group.destination, (0.0, ""))
        if until > now:
            outcome.postponed = (group.ids, until, why)
            return outcome
        if body is None or body.raw is None:
            outcome.fail(group.ids, "the stored message is missing or not a message")
            return outcome
        ended: dict[str, tuple] = {}  # recipient -> how it ended, when not sent
        recipients = []
        for recipient in group.recipients:
            if _sendable(recipient):
                recipients.append(recipient)
            else:
                ended[recipient] = ("fail", f"'{recipient[:100]}' cannot be used as an address")
        if not recipients:
            return by_row(group, ended, outcome)
        sender = group.sender
        if (self.verp or body.personal) and len(group.recipients) == 1:  # its own address
            sender = verp_sender(self.site.secret, sender, group.ids[0], self.domain)
        prefix = b""
        if body.personal and body.slug:
            prefix = personal_headers(self.site.secret, self.web_url, body.slug, self.domain,
                                      recipients[0])
        raw, sign = self._prepared(body), bool(self.signer and body.personal)
        if group.destination == MAILDIR:
            try:
                await asyncio.to_thread(write_outbox, self.site.outbox,
                                        personal_copy(self.signer if sign else None, prefix,
                                                      raw), sender, recipients)
            except OSError as error:
                ended.update((r, ("defer", f"cannot write the outbox: {error}"))
                             for r in recipients)
            return by_row(group, ended, outcome)
        try:
            handover = await self.handover.transact(
                group.destination, self.cap(group.destination), sender, recipients,
                group.body_id, prefix, raw, sign)
        except Skipped as error:  # its destination failed just now: wait with it
            until = self.down.get(group.destination, (now + self.policy.retry[0], ""))[0]
            outcome.postponed = (group.ids, until, str(error))  # untried: all wait
            return outcome
        except Unavailable as error:
            self._mark_down(group.destination, str(error), outcome)
            ended.update((r, ("defer", str(error))) for r in recipients)
            return by_row(group, ended, outcome)
        self.reached.add(group.destination)
        if handover.unavailable:
            self._mark_down(group.destination, handover.unavailable, outcome)
        for recipient, error in handover.temporary.items():
            ended[recipient] = ("defer", error)
        for recipient, (code, text) in handover.permanent.items():
            ended[recipient] = ("bounce", code, text)
        for recipient, reason in handover.failed.items():
            ended[recipient] = ("fail", reason)
        if len(handover.sent) + len(ended) != len(group.recipients):  # never, but if so:
            sent = set(handover.sent)  # a recipient nobody answered for is tried again
            ended.update((r, ("defer", "no reply for this recipient")) for r in recipients
                         if r not in sent and r not in ended)
        return by_row(group, ended, outcome)

    def _mark_down(self, destination: str, why: str, outcome: Outcome) -> None:
        """Leave a failing destination alone until its first retry is due; its
        other due rows wait with it (in the same write as this outcome)."""
        until = self.clock() + max(1, self.policy.retry[0])
        self.down[destination] = (until, why)
        self.reached.discard(destination)
        outcome.down = (destination, until, why)
        log.warning("destination %s is unavailable until %s: %s", destination,
                    time.strftime("%H:%M:%S", time.localtime(until)), why)

    def _prepared(self, body: Body) -> bytes:
        """The body as it goes out: CRLF line ends and, when copies are identical,
        DKIM-signed once (a personal copy is signed as a whole at hand-over)."""
        if body.ready is None:
            raw = dated(body.raw, self.domain, self.clock())
            raw = crlf(raw) if self.signer else raw
            if self.signer and not body.personal:
                raw = self.signer.sign(raw) + raw
            body.ready = raw
        return body.ready


_HEAD_END = re.compile(rb"\r?\n\r?\n")


def dated(raw: bytes, domain: str, now: float) -> bytes:
    """`raw` with a Date and a Message-ID on top when its header has none (mail
    passed on as it came, e.g. to facilitators, may lack them)."""
    end = _HEAD_END.search(raw)
    head = raw[:end.start()] if end else raw
    missing = b""
    if not re.search(rb"(?im)^date[ \t]*:", head):
        missing += f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
    if not re.search(rb"(?im)^message-id[ \t]*:", head):
        missing += f"Message-ID: {email.utils.make_msgid(domain=domain)}\r\n".encode()
    return missing + raw if missing else raw


_PLAIN = re.compile(r"[^@<>\s\x00-\x1f\x7f]+@[^@<>\s\x00-\x1f\x7f]+")


def _sendable(address: str) -> bool:
    """An address we can put on an RCPT line: one @, no spaces, brackets or
    controls (the common case, checked first and cheaply), or one that our
    address syntax accepts (a quoted local part, say)."""
    return _PLAIN.fullmatch(address) is not None or is_address(address)
