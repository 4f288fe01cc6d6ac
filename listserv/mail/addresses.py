"""Addresses: checking, normalising, and what a recipient at our domain means.

Pure functions; reads and writes nothing. Will not look up forums: callers
ask the store whether a slug exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses

RESERVED = frozenset({"postmaster", "abuse", "mailer-daemon", "hostmaster", "webmaster",
                      "noc", "security", "root", "whatsnew", "relay", "templates",
                      "listserv", "nobody", "bounces", "owner"})
SUFFIXES = ("request", "join", "leave", "owner", "confirm", "bounces", "subscribe",
            "unsubscribe")
SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
_LOCAL = re.compile(r"^[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f]{1,64}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([^\s@.<>()\[\],;:\\\"\x00-\x1f\x7f]{1,63}\.)+"
                     r"[^\s@.<>()\[\],;:\\\"\x00-\x1f\x7f]{2,63}$")


class AddressError(ValueError):
    """Not a usable mail address; str() says why."""


def normalise(address: str) -> str:
    """The form we store and compare: trimmed, no angle brackets, lower case."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address.lower()


def check(address: str) -> str:
    """Normalise `address` and make sure it is one plain mailbox."""
    value = normalise(address)
    if value.count("@") != 1:
        raise AddressError(f"'{address}' is not an address like 'ana@example.org'")
    local, domain = value.split("@")
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError(f"'{address}' has an unusable part before the @")
    if not _DOMAIN.match(domain):
        raise AddressError(f"'{address}' has an unusable domain after the @")
    return value


def is_address(address: str) -> bool:
    try:
        check(address)
    except AddressError:
        return False
    return True


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def check_slug(slug: str) -> str:
    """A forum name that can be an address of its own: lower case, digits, hyphens."""
    if not SLUG.match(slug):
        raise AddressError(f"'{slug}' is not a forum name: use lower-case letters, digits "
                           f"and hyphens, e.g. 'farmers-network'")
    if slug in RESERVED:
        raise AddressError(f"'{slug}' is reserved for the site's own addresses")
    if any(slug.endswith("-" + suffix) for suffix in SUFFIXES):
        raise AddressError(f"'{slug}' ends like one of a forum's own addresses "
                           f"(-{', -'.join(SUFFIXES)})")
    return slug


@dataclass(frozen=True)
class Recipient:
    """What an address at our domain asks for."""

    kind: str  # post, request, join, leave, owner, confirm, bounces, site
    slug: str  # the forum, or the site address name for kind == "site"
    detail: str = ""  # the token or VERP part after "+"


def classify(address: str, domain: str, site_addresses: frozenset[str] = frozenset()) -> \
        Recipient | None:
    """Read a recipient at `domain`; None when it is not ours at all.

    The caller still has to check that the forum exists.
    """
    value = normalise(address)
    local, _, rcpt_domain = value.rpartition("@")
    if rcpt_domain != domain.lower() or not local:
        return None
    if local in ("postmaster", "abuse") or local in site_addresses:
        return Recipient("site", local)
    base, _, detail = local.partition("+")
    if detail and base in site_addresses:  # e.g. templates+TOKEN: a site address's code
        return Recipient("site", base, detail)
    for suffix in ("request", "join", "leave", "owner", "confirm", "bounces"):
        if base.endswith("-" + suffix):
            return Recipient(suffix, base[: -len(suffix) - 1], detail)
    if detail:  # plus-addressing on a forum's post address is not ours
        return None
    return Recipient("post", base)


def first_address(header_value: str | None) -> tuple[str, str] | None:
    """(name, address) of the only mailbox in a From-like header, else None.

    Two mailboxes, group syntax or anything that does not parse cleanly is
    ambiguous and gives None: the caller must not act on it.
    """
    if not header_value:
        return None
    try:
        pairs = getaddresses([str(header_value)], strict=True)
    except TypeError:  # Python builds without the strict flag
        pairs = getaddresses([str(header_value)])
    except Exception:  # any parser failure on hostile input means ambiguous
        return None
    pairs = [(name, addr) for name, addr in pairs if name or addr]
    if len(pairs) != 1:
        return None
    name, addr = pairs[0]
    if not is_address(addr):
        return None
    return name.replace("\r", " ").replace("\n", " ").strip(), normalise(addr)
