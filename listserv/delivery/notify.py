"""Sending the site's own mail: a template, in a language, queued once.

Renders a mail template (`Subject:` line, blank line, body) in the
recipient's language, composes it with safe headers (RFC 3834
`Auto-Submitted`, so auto-responders do not answer us) and queues it under
a ref that makes retrying the same send harmless (`send_text` does the same
for a text that is already written). Site templates are read from their
checked copies (`site.active_templates`). Writes through
`queue.queue_message`; reads templates. Each message counts against its
recipient's `[site] max_replies_per_hour` (`autoreplies`); over it, nothing
is queued. Will not decide who may receive
what: callers do.
"""

from __future__ import annotations

from datetime import datetime
from email.message import Message

from listserv.delivery.autoreplies import may_reply
from listserv.delivery.queue import queue_message
from listserv.mail.compose import compose
from listserv.mail.templates import render_mail


def forum_addresses(slug: str, domain: str) -> dict[str, str]:
    """Every address of a forum, for templates and headers."""
    return {
        "post": f"{slug}@{domain}",
        "request": f"{slug}-request@{domain}",
        "join": f"{slug}-join@{domain}",
        "leave": f"{slug}-leave@{domain}",
        "owner": f"{slug}-owner@{domain}",
        "bounces": f"{slug}-bounces@{domain}",
        "confirm": f"{slug}-confirm@{domain}",
    }


def site_context(site, forum: dict | None = None) -> dict:
    """What every template may use: the site, and the forum when there is one."""
    settings = site.settings
    context = {"site": {"name": settings.site.name, "domain": settings.domain,
                        "postmaster": f"postmaster@{settings.domain}"}}
    if forum is not None:
        context["forum"] = {key: forum[key] for key in
                            ("slug", "title", "path", "language", "policy", "description")}
        context["addresses"] = forum_addresses(forum["slug"], settings.domain)
    return context


def send_template(db, site, name: str, *, to: str, language: str, ref: str, now: datetime,
                  forum: dict | None = None, reply_to: str = "", in_reply_to: str = "",
                  attachments: list[Message] | None = None, **context) -> int:
    """Render template `name` for `to` and queue it; returns rows queued (0 if
    this ref already reached `to`)."""
    full = {**site_context(site, forum), **context}
    subject, body = render_mail(site.active_templates, name, language, **full)
    return send_text(db, site, to=to, subject=subject, text=body, ref=ref, now=now,
                     forum=forum, reply_to=reply_to, in_reply_to=in_reply_to,
                     attachments=attachments, language=language)


def send_text(db, site, *, to: str, subject: str, text: str, ref: str, now: datetime,
              forum: dict | None = None, reply_to: str = "", in_reply_to: str = "",
              attachments: list[Message] | None = None, sender: str = "",
              language: str = "") -> int:
    """Queue a text we already have (a fetched document, a rendered template)
    to `to`, with the same headers as send_template; returns rows queued.
    `sender` replaces the From address (the forum's -request, else postmaster)."""
    settings = site.settings
    if not may_reply(db, site, to, ref, now):
        return 0
    body = text
    if forum is not None:
        addresses = forum_addresses(forum["slug"], settings.domain)
        author, envelope = addresses["request"], addresses["bounces"]
    else:
        author = f"postmaster@{settings.domain}"
        envelope = f"listserv-bounces@{settings.domain}"
    sender = sender or author
    headers = {"Auto-Submitted": "auto-replied" if in_reply_to else "auto-generated",
               "Precedence": "bulk", "X-Auto-Response-Suppress": "All"}
    if reply_to:
        headers["Reply-To"] = reply_to
    message = compose(sender=sender, to=to, subject=subject, text=body,
                      domain=settings.domain, headers=headers, in_reply_to=in_reply_to,
                      attachments=attachments, now=now)
    if language:  # RFC 3282: the language the reply or notice is written in (after
        message["Content-Language"] = language  # the body, which clears Content-* fields)
    return queue_message(db, ref, message, [to], envelope, now,
                         forum_id=forum["id"] if forum else None)
