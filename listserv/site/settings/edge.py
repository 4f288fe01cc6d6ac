"""Settings of the mail path: [site], [smtp], [delivery] and [web].

Frozen dataclasses whose defaults are the shipped `config/listserv.toml`;
each `check(key)` raises ValueError for a bad value. Reads nothing itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from listserv.site.settings.values import (DOMAIN_NAME, LANGUAGE_CODE, LANGUAGES, parse_duration,
                                           parse_hostport)


@dataclass(frozen=True)
class SiteSection:
    domain: str = "lists.example.org"
    name: str = "Alliance forums"
    role: str = "hub"
    languages: tuple[str, ...] = LANGUAGES
    default_language: str = "en"
    secretariat: tuple[str, ...] = ()
    node_id: str = ""
    timezone: str = "UTC"
    retry_handling: str = "1m"
    keep_sent: str = "7d"
    keep_raw: str = "90d"
    max_replies_per_hour: int = 10

    def check(self, key: str) -> None:
        if key == "retry_handling" and parse_duration(self.retry_handling) < 1:
            raise ValueError("must be at least '1s'")
        if key in ("keep_sent", "keep_raw") and parse_duration(getattr(self, key)) < 3600:
            raise ValueError("must be at least '1h'")
        if key == "max_replies_per_hour" and self.max_replies_per_hour < 1:
            raise ValueError("must be at least 1")
        if key == "domain" and not DOMAIN_NAME.match(self.domain):
            raise ValueError(f"'{self.domain}' is not a mail domain, e.g. 'lists.example.org'")
        if key == "role" and self.role not in ("hub", "relay"):
            raise ValueError(f"'{self.role}' must be 'hub' or 'relay'")
        if key == "languages":
            bad = [lang for lang in self.languages if not LANGUAGE_CODE.match(lang)]
            if bad or not self.languages:
                raise ValueError("must list two-letter language codes, e.g. ['en', 'fr']")
        if key == "default_language" and self.default_language not in self.languages:
            raise ValueError(f"'{self.default_language}' is not one of [site] languages")
        if key == "secretariat":
            bad = [a for a in self.secretariat if "@" not in a or any(c in a for c in " \r\n<>")]
            if bad:
                raise ValueError(f"'{bad[0]}' is not a plain address like 'team@example.org'")
        if key == "timezone":
            from zoneinfo import ZoneInfo
            try:
                ZoneInfo(self.timezone)
            except Exception as error:  # ZoneInfoNotFoundError or a bad key
                raise ValueError(f"'{self.timezone}' is not a time zone like 'UTC' "
                                 f"or 'Africa/Dakar'") from error

    @property
    def retry_handling_seconds(self) -> int:
        return parse_duration(self.retry_handling)

    @property
    def keep_sent_seconds(self) -> int:
        return parse_duration(self.keep_sent)

    @property
    def keep_raw_seconds(self) -> int:
        return parse_duration(self.keep_raw)


@dataclass(frozen=True)
class SmtpSection:
    listen: str = "127.0.0.1:8025"
    protocol: str = "smtp"
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_connections: int = 300
    max_per_ip: int = 20
    command_timeout: str = "5m"
    transaction_timeout: str = "30m"
    tls_cert: str = ""
    tls_key: str = ""
    require_tls: bool = False

    def check(self, key: str) -> None:
        if key == "tls_key" and self.tls_key and not self.tls_cert:
            raise ValueError("needs [smtp] tls_cert, the certificate that goes with the key")
        if key == "require_tls" and self.require_tls and not self.tls_cert:
            raise ValueError("needs [smtp] tls_cert and tls_key: there is no TLS to require")
        if key == "listen":
            parse_hostport(self.listen)
        if key in ("max_connections", "max_per_ip") and getattr(self, key) < 1:
            raise ValueError("must be at least 1")
        if key in ("command_timeout", "transaction_timeout") and \
                parse_duration(getattr(self, key)) < 1:
            raise ValueError("must be at least '1s'")
        if key == "protocol" and self.protocol not in ("smtp", "lmtp"):
            raise ValueError(f"'{self.protocol}' must be 'smtp' or 'lmtp'")
        if key == "max_message_size" and self.max_message_size < 1024:
            raise ValueError("must be at least 1024 (bytes)")
        if key == "max_recipients" and self.max_recipients < 1:
            raise ValueError("must be at least 1")


    def seconds(self, key: str) -> int:
        """command_timeout or transaction_timeout in seconds."""
        return parse_duration(getattr(self, key))


@dataclass(frozen=True)
class DeliverySection:
    smarthost: str = ""
    routes: dict[str, str] = field(default_factory=dict)
    concurrency: int = 8
    batch_size: int = 100
    crash_window: int = 800
    own_process: bool = True
    verp: bool = False
    retry_schedule: tuple[str, ...] = ("1m", "5m", "15m", "1h", "2h", "4h")
    give_up_after: str = "5d"
    timeout: str = "60s"
    lowband_budget: int = 20000
    helo: str = ""
    tls: str = "opportunistic"
    verify: bool = True
    ca_file: str = ""
    user: str = ""
    password_file: str = ""

    def check(self, key: str) -> None:
        if key == "smarthost" and self.smarthost:
            parse_hostport(self.smarthost)
        if key == "tls" and self.tls not in ("opportunistic", "none", "starttls", "tls"):
            raise ValueError(f"'{self.tls}' must be 'opportunistic', 'none', 'starttls' "
                             f"(port 587) or 'tls' (port 465)")
        if key == "user" and self.user and not self.password_file:
            raise ValueError("needs [delivery] password_file, a file holding the password")
        if key == "user" and self.user and self.tls not in ("starttls", "tls"):
            raise ValueError("needs [delivery] tls = \"starttls\" or \"tls\": a password "
                             "is never sent over a connection that may be in the clear")
        if key == "password_file" and self.password_file and not self.user:
            raise ValueError("needs [delivery] user, the name to log in with")
        if key in ("tls", "user") and (self.tls != "opportunistic" or self.user) and \
                not self.smarthost:
            raise ValueError("applies to the smarthost: set [delivery] smarthost too")
        if key == "routes":
            for domain, target in self.routes.items():
                if not (domain == "*" or DOMAIN_NAME.match(domain.lstrip("."))):
                    raise ValueError(f"'{domain}' is not a mail domain")
                parse_hostport(target)
        if key in ("concurrency", "batch_size") and not 1 <= getattr(self, key) <= 1000:
            raise ValueError("must be between 1 and 1000")
        if key == "crash_window" and not self.batch_size <= self.crash_window <= 100_000:
            raise ValueError(f"must be between batch_size ({self.batch_size}), so that a "
                             f"transaction fits in it, and 100000")
        if key == "retry_schedule":
            if not self.retry_schedule:
                raise ValueError("must list at least one duration, e.g. ['1m', '15m']")
            for item in self.retry_schedule:
                parse_duration(item)
        if key in ("give_up_after", "timeout"):
            parse_duration(getattr(self, key))
        if key == "lowband_budget" and self.lowband_budget < 2000:
            raise ValueError("must be at least 2000 (bytes)")

    @property
    def retry_seconds(self) -> tuple[int, ...]:
        return tuple(parse_duration(item) for item in self.retry_schedule)

    @property
    def give_up_seconds(self) -> int:
        return parse_duration(self.give_up_after)

    @property
    def timeout_seconds(self) -> int:
        return parse_duration(self.timeout)


@dataclass(frozen=True)
class WebSection:
    url: str = ""
    listen: str = "127.0.0.1:8080"
    metrics: bool = False

    def check(self, key: str) -> None:
        if key == "url" and self.url and not re.match(r"^https?://[^\s/]+(/\S*)?$", self.url):
            raise ValueError(f"'{self.url}' must be an address like 'https://lists.example.org'")
        if key == "url" and self.url.startswith("http://") and not re.match(
                r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(/|$)", self.url):
            raise ValueError(f"'{self.url}' must be https (RFC 8058 one-click unsubscribe "
                             f"needs it; http only for localhost), e.g. "
                             f"'https://lists.example.org'")
        if key == "listen":
            parse_hostport(self.listen)
