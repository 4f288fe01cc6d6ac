"""Settings of the site's care: [log], [dkim], [dns] and [bounces].

Frozen dataclasses with their defaults; each `check(key)` raises ValueError
for a bad value. Reads nothing itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from listserv.site.settings.values import DOMAIN_NAME, parse_duration, parse_hostport


@dataclass(frozen=True)
class LogSection:
    """Where `listserv serve` writes its log (see listserv/service.py)."""

    file: str = ""
    level: str = "info"
    syslog: bool = False
    syslog_address: str = "/dev/log"
    syslog_facility: str = "daemon"

    def check(self, key: str) -> None:
        if key == "level" and self.level not in ("debug", "info", "warning", "error"):
            raise ValueError(f"'{self.level}' must be 'debug', 'info', 'warning' or 'error'")
        if key == "syslog_address" and not self.syslog_address.startswith("/"):
            parse_hostport(self.syslog_address)
        if key == "syslog_facility":
            from logging.handlers import SysLogHandler
            if self.syslog_facility not in SysLogHandler.facility_names:
                raise ValueError(f"'{self.syslog_facility}' is not a syslog facility like "
                                 f"'daemon', 'mail' or 'local0'")


_SELECTOR = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class DkimSection:
    """DKIM signing of everything the site sends (see dkim.py)."""

    domain: str = ""
    selector: str = ""
    key_file: str = "data/dkim.key"
    next_selector: str = ""
    next_key_file: str = ""
    ed25519_selector: str = ""
    ed25519_key_file: str = "data/dkim-ed25519.key"

    def check(self, key: str) -> None:
        value = getattr(self, key)
        if key == "domain" and value and not DOMAIN_NAME.match(value):
            raise ValueError(f"'{value}' is not a mail domain, e.g. 'lists.example.org'")
        if key.endswith("selector") and value and not _SELECTOR.match(value):
            raise ValueError(f"'{value}' must be one DNS label of letters, digits and "
                             f"hyphens, e.g. 'ls2026'")
        if key == "next_selector" and value and not self.next_key_file:
            raise ValueError("needs [dkim] next_key_file, the key of the new selector")
        if key == "next_selector" and value and value == self.selector:
            raise ValueError(f"'{value}' is already [dkim] selector; rotation needs another")
        if key == "ed25519_selector" and value and not self.selector:
            raise ValueError("needs [dkim] selector too: receivers that do not know "
                             "Ed25519 (RFC 8463) still need the RSA signature")

    def signing_domain(self, site_domain: str) -> str:
        return self.domain or site_domain


@dataclass(frozen=True)
class DnsSection:
    """How the site asks DNS (DKIM checks, DMARC policies)."""

    nameservers: tuple[str, ...] = ()
    timeout: str = "2s"

    def check(self, key: str) -> None:
        if key == "nameservers":
            for item in self.nameservers:
                parse_hostport(item)
        if key == "timeout" and not 1 <= parse_duration(self.timeout) <= 30:
            raise ValueError("must be between '1s' and '30s'")

    @property
    def timeout_seconds(self) -> int:
        return parse_duration(self.timeout)


@dataclass(frozen=True)
class BouncesSection:
    """What permanent delivery failures do to a member (see bounce_actions.py)."""

    threshold: int = 5
    stale_after: str = "7d"
    warnings: int = 3
    warning_interval: str = "7d"
    check_every: str = "15m"

    def check(self, key: str) -> None:
        if key == "threshold" and not 1 <= self.threshold <= 100:
            raise ValueError("must be between 1 and 100 (days with a bounce)")
        if key == "warnings" and not 0 <= self.warnings <= 20:
            raise ValueError("must be between 0 and 20")
        if key in ("stale_after", "warning_interval", "check_every") and \
                parse_duration(getattr(self, key)) < 1:
            raise ValueError("must be at least '1s'")

    def seconds(self, key: str) -> int:
        return parse_duration(getattr(self, key))
