"""Asking DNS for TXT records, through the site's own resolver settings.

`make_resolver` builds a dnspython resolver from `[dns]`: the system's
resolver, or the `nameservers` given there ("host:port", e.g. a DNS server on
loopback in tests), with the short `timeout` of that section. `txt_records`
returns each TXT record of a name as one string (a record longer than 255
bytes comes in pieces, joined here) with its TTL, and says plainly when the
name does not exist, has no TXT records or could not be asked. Reads and
writes nothing else; caches nothing (the callers keep what they need).
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from listserv.errors import ListservError
from listserv.site.settings import parse_hostport


class DnsError(ListservError):
    """DNS could not be asked (timeout, no server answered); str() says why."""


class NoRecord(ListservError):
    """The name does not exist, or has no TXT records."""


def make_resolver(dns_settings) -> dns.resolver.Resolver:
    """A resolver for `[dns]`: its nameservers if it names any, else the system's."""
    if dns_settings.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        servers = []
        for item in dns_settings.nameservers:
            host, port = parse_hostport(item)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        resolver.nameservers = servers
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = float(dns_settings.timeout_seconds)
    resolver.timeout = float(dns_settings.timeout_seconds)
    resolver.cache = None  # callers cache for the record's TTL themselves
    return resolver


def to_ascii(domain: str) -> str:
    """An internationalised domain in its DNS (IDNA, "xn--") form."""
    try:
        return dns.name.from_unicode(domain.strip().rstrip(".")).to_text(omit_final_dot=True)
    except (dns.exception.DNSException, UnicodeError, ValueError) as error:
        raise NoRecord(f"'{domain}' is not a domain name DNS can ask about: {error}") from None


def txt_records(resolver: dns.resolver.Resolver, name: str) -> tuple[list[str], int]:
    """The TXT records of `name` (pieces joined) and their TTL in seconds.

    NoRecord when the name does not exist or has no TXT; DnsError when DNS
    could not be asked."""
    try:
        answer = resolver.resolve(to_ascii(name), "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        raise NoRecord(f"{name} does not exist in DNS (NXDOMAIN)") from None
    except dns.resolver.NoAnswer:
        raise NoRecord(f"{name} has no TXT record") from None
    except dns.exception.Timeout:
        raise DnsError(f"DNS did not answer for {name} in time") from None
    except dns.resolver.NoNameservers as error:
        raise DnsError(f"no DNS server could answer for {name}: {error}") from None
    except dns.exception.DNSException as error:
        raise DnsError(f"DNS lookup of {name} failed: {error}") from None
    texts = [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
    return texts, int(answer.rrset.ttl if answer.rrset is not None else 0)
