"""DMARC mitigation: posts from domains that ask receivers to reject mail
that fails DMARC go out in a form those receivers accept.

A forum changes a post's From (and DKIM signature) by its nature: the
subject tag and list headers break the author's signature, and the From
still names the author's domain, so a receiver that checks DMARC (RFC 7489)
refuses or junks the copy when that domain publishes `p=quarantine` or
`p=reject`. Per forum (`forums.dmarc`):

- `auto`: look the author's policy up (`_dmarc.` TXT of the From domain,
  else of its organisational domain by the Public Suffix List, from the
  `publicsuffixlist` package, offline), and munge when it is quarantine or
  reject; a From with several addresses is always munged (no receiver can
  align it). When DNS cannot say (a timeout, a failing server), the post is
  munged anyway: a changed From costs nothing, a refused copy costs a bounce
  against an innocent member. Distribution never waits on DNS for longer
  than `[dns] timeout`.
- `munge`: always. `From: "Ana Diallo via Peace" <peace@D>`, the author
  added to `Reply-To`, and the original From in an RFC 9057 `Author:`.
- `wrap`: the post, untouched (its own DKIM signature intact), goes as a
  `message/rfc822` part of a message from the forum, as Mailman does.
- `none`: never.

`Policies` keeps what DNS said for the record's TTL. `munge` and `wrap` are
pure: they change or build a message and do no I/O. Reads DNS; writes
nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from email.message import Message
from email.utils import formataddr, getaddresses

from publicsuffixlist import PublicSuffixList

from listserv.mail.addresses import domain_of, normalise
from listserv.mail.headers import clean_header_value, decode_header_text
from listserv.site.dnsquery import DnsError, NoRecord, make_resolver, to_ascii, txt_records

log = logging.getLogger(__name__)

STRICT = ("quarantine", "reject")
NEGATIVE_SECONDS = 3600  # how long "no DMARC record" is believed
FAILURE_SECONDS = 60  # how long a DNS failure is believed before asking again
MAX_SECONDS = 86400
UNKNOWN = "unknown"  # DNS could not say

_psl = None
_psl_lock = threading.Lock()


def organisational_domain(domain: str) -> str:
    """The registered domain of `domain` by the Public Suffix List (RFC 7489
    §3.2): mail.example.co.uk -> example.co.uk; the domain itself when it has
    no registered part."""
    global _psl
    with _psl_lock:
        if _psl is None:  # the package's own copy of the list: nothing is fetched
            _psl = PublicSuffixList()
    return _psl.privatesuffix(domain.lower()) or domain.lower()


def parse_policy(texts: list[str]) -> tuple[str, str] | None:
    """(p, sp) of the one DMARC record among `texts`, or None: no record,
    several records (RFC 7489 §6.6.3: then none applies), or one whose
    policy does not parse."""
    records = []
    for text in texts:
        tags = {}
        for part in text.split(";"):
            name, sep, value = part.partition("=")
            if sep:
                tags.setdefault(name.strip().lower(), value.strip().lower())
        first = text.split(";", 1)[0].replace(" ", "").lower()
        if first == "v=dmarc1":  # v= must be the first tag
            records.append(tags)
    if len(records) != 1:
        return None
    policy = records[0].get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        return None
    sub = records[0].get("sp", policy)
    return policy, sub if sub in ("none", "quarantine", "reject") else policy


class Policies:
    """Authors' DMARC policies, looked up with the site's resolver and kept
    for the TTL of the record (capped), so a fan-out asks DNS once a domain."""

    def __init__(self, dns_settings, clock=time.monotonic):
        self.resolver = make_resolver(dns_settings)
        self.clock = clock
        self.cache: dict[str, tuple[tuple[str, str] | None | str, float]] = {}
        self.lock = threading.Lock()

    def _record(self, name: str):
        """(p, sp), None (no record) or UNKNOWN, cached."""
        now = self.clock()
        with self.lock:
            found = self.cache.get(name)
        if found is not None and found[1] > now:
            return found[0]
        try:
            texts, ttl = txt_records(self.resolver, name)
            value, keep = parse_policy(texts), min(max(ttl, 60), MAX_SECONDS)
        except NoRecord:
            value, keep = None, NEGATIVE_SECONDS
        except DnsError as error:
            log.warning("DMARC lookup of %s failed: %s", name, error)
            value, keep = UNKNOWN, FAILURE_SECONDS
        with self.lock:
            if len(self.cache) > 50_000:
                self.cache.clear()
            self.cache[name] = (value, now + keep)
        return value

    def policy(self, domain: str) -> str:
        """'none', 'quarantine' or 'reject' for mail From `domain`; '' when it
        publishes no DMARC policy; UNKNOWN when DNS could not say."""
        try:
            domain = to_ascii(domain).lower()
        except NoRecord:
            return ""
        found = self._record(f"_dmarc.{domain}")
        if found == UNKNOWN:
            return UNKNOWN
        if found is not None:
            return found[0]
        organisation = organisational_domain(domain)
        if organisation == domain:
            return ""
        found = self._record(f"_dmarc.{organisation}")
        if found == UNKNOWN:
            return UNKNOWN
        return found[1] if found is not None else ""  # sp= for a subdomain

    def prefetch(self, domains) -> None:
        """Look these domains up now (off the store's writer), so distribution
        finds them cached."""
        for domain in set(domains):
            if domain:
                self.policy(domain)


def authors(message: Message) -> list[tuple[str, str]]:
    """(name, address) of every address in every From header."""
    values = [decode_header_text(v) for v in message.get_all("From") or []]
    return [(name, normalise(address)) for name, address in getaddresses(values)
            if "@" in address]


def action(policies: Policies | None, mode: str, message: Message) -> str:
    """What to do for a forum in `mode` with this post: 'munge', 'wrap' or 'none'."""
    if mode in ("munge", "wrap", "none"):
        return mode
    found = authors(message)
    if len(found) != 1:
        return "munge"  # several authors (or none readable): one From, the forum's
    if policies is None:
        return "none"
    domain = domain_of(found[0][1])
    verdict = policies.policy(domain)
    if verdict == UNKNOWN:
        log.info("DMARC policy of %s unknown (DNS failed): munging the From", domain)
        return "munge"
    return "munge" if verdict in STRICT else "none"


def munged_from(message: Message, forum: dict, domain: str) -> str:
    """'"Ana Diallo via Peace" <peace@D>' for the post's first author."""
    found = authors(message)
    name = found[0][0] if found else ""
    if not name and found:
        name = found[0][1].split("@")[0]
    title = clean_header_value(forum["title"], 100)
    display = f"{clean_header_value(name, 100)} via {title}" if name else title
    address = f"{forum['slug']}@{domain}"
    if not display.isascii():
        return formataddr((display, address), charset="utf-8")
    quoted = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def munge(message: Message, forum: dict, domain: str) -> None:
    """Give the post the forum's From, the author in Reply-To and Author."""
    original = [v for v in message.get_all("From") or []]
    found = authors(message)
    new_from = munged_from(message, forum, domain)
    replies = [decode_header_text(v) for v in message.get_all("Reply-To") or []]
    reply_to = getaddresses(replies)
    known = {normalise(address) for _name, address in reply_to}
    reply_to += [(name, address) for name, address in found if address not in known]
    for name in ("From", "Reply-To", "Author"):
        del message[name]
    message["From"] = new_from
    if reply_to:
        message["Reply-To"] = ", ".join(formataddr((name, address), charset="utf-8")
                                        for name, address in reply_to if address)
    if original:  # RFC 9057: who wrote it, as it was
        text = ", ".join(decode_header_text(v) for v in original)
        message["Author"] = text if text.isascii() else ", ".join(
            formataddr((name, address), charset="utf-8") for name, address in found)


WRAP_HEADERS = ("To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                "Content-Language")


def wrap(original: Message, forum: dict, domain: str) -> Message:
    """A message from the forum carrying the untouched post as message/rfc822."""
    outer = Message()
    for name in WRAP_HEADERS:
        for value in original.get_all(name) or []:
            outer[name] = value
    outer["MIME-Version"] = "1.0"
    munge_into = Message()
    for value in original.get_all("From") or []:
        munge_into["From"] = value
    for value in original.get_all("Reply-To") or []:
        munge_into["Reply-To"] = value
    munge(munge_into, forum, domain)
    for name in ("From", "Reply-To", "Author"):
        for value in munge_into.get_all(name) or []:
            outer[name] = value
    outer.set_type("multipart/mixed")
    outer.set_boundary(f"=_listserv_wrap_{abs(hash(original.get('Message-ID', ''))):x}")
    inner = Message()
    inner.set_type("message/rfc822")
    inner["Content-Disposition"] = "inline"
    inner.set_payload([original])
    outer.set_payload([inner])
    return outer

