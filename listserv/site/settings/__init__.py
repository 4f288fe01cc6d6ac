"""The site's settings: `listserv.toml` read once into frozen dataclasses.

Reads the TOML file; writes nothing. Every section checks its own keys:
unknown keys, wrong types and bad values raise ConfigError naming the file,
the section, the key and how to fix it. Defaults live here and, with a
comment each, in the shipped `config/listserv.toml`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listserv.errors import ConfigError
from listserv.site.cron import check_cron

LANGUAGES = ("en", "fr", "es", "pt")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_LANG = re.compile(r"^[a-z]{2,3}$")


def parse_duration(text: str) -> int:
    """'90s', '5m', '2h', '3d' -> seconds; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not a duration like '30s', '5m', '2h' or '3d'")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_hostport(text: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError with an example otherwise."""
    match = _HOSTPORT.match(text.strip())
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError(f"'{text}' needs a host and a port, e.g. 'mail.example.org:25'")
    return match.group(1).strip("[]"), int(match.group(2))


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
        if key == "domain" and not _DOMAIN.match(self.domain):
            raise ValueError(f"'{self.domain}' is not a mail domain, e.g. 'lists.example.org'")
        if key == "role" and self.role not in ("hub", "relay"):
            raise ValueError(f"'{self.role}' must be 'hub' or 'relay'")
        if key == "languages":
            bad = [lang for lang in self.languages if not _LANG.match(lang)]
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
                if not (domain == "*" or _DOMAIN.match(domain.lstrip("."))):
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


@dataclass(frozen=True)
class ModerationSection:
    token_lifetime: str = "14d"
    confirm_lifetime: str = "7d"
    remind_after: str = "2d"
    remind_every: str = "1d"
    escalate_after: str = "7d"
    expire_after: str = "14d"
    check_every: str = "15m"
    require_authentication: bool = False
    trusted_hosts: tuple[str, ...] = ()

    def check(self, key: str) -> None:
        if key == "require_authentication":
            if self.require_authentication and not self.trusted_hosts:
                raise ValueError("needs [moderation] trusted_hosts: the names your receiving "
                                 "mail server writes in Authentication-Results")
            return
        if key == "trusted_hosts":
            bad = [h for h in self.trusted_hosts if not _DOMAIN.match(h)]
            if bad:
                raise ValueError(f"'{bad[0]}' is not a host name like 'mx.example.org'")
            return
        seconds = parse_duration(getattr(self, key))
        if key in ("remind_every", "check_every") and seconds < 1:
            raise ValueError("must be at least '1s'")
        if key == "expire_after" and not (parse_duration(self.remind_after)
                                          <= parse_duration(self.escalate_after) <= seconds):
            raise ValueError("must be at least escalate_after, which must be at least "
                             "remind_after (e.g. '2d', '7d', '14d')")

    @property
    def token_seconds(self) -> int:
        return parse_duration(self.token_lifetime)

    @property
    def confirm_seconds(self) -> int:
        return parse_duration(self.confirm_lifetime)

    def seconds(self, key: str) -> int:
        """One of the durations above in seconds, e.g. seconds("remind_after")."""
        return parse_duration(getattr(self, key))


@dataclass(frozen=True)
class RelaySection:
    """On a relay node: its hub, the shared secret, languages, translators, deadline."""

    hub: str = ""
    hub_node: str = ""
    secret_file: str = "relay.key"
    languages: tuple[str, ...] = ()
    translators: dict[str, str] = field(default_factory=dict)
    deadline: str = "3d"
    machine_translation: str = ""
    postal_return_address: str = ""
    postal_country: str = ""

    def check(self, key: str) -> None:
        if key == "postal_country" and self.postal_country and \
                not re.match(r"^[A-Z]{2}$", self.postal_country):
            raise ValueError(f"'{self.postal_country}' must be a two-letter country code in "
                             f"capitals, e.g. 'SN'")
        if key == "postal_return_address" and len(self.postal_return_address) > 500:
            raise ValueError("is too long for a label: at most 500 characters")
        if key == "hub" and self.hub and ("@" not in self.hub or any(
                c in self.hub for c in " \r\n<>")):
            raise ValueError(f"'{self.hub}' is not the hub's federation address, e.g. "
                             f"'relay@lists.example.org'")
        if key == "languages":
            bad = [lang for lang in self.languages if not _LANG.match(lang)]
            if bad:
                raise ValueError("must list two-letter language codes, e.g. ['fr', 'pt']")
        if key == "translators":
            for lang, addresses in self.translators.items():
                if not _LANG.match(lang):
                    raise ValueError(f"'{lang}' is not a language code; write e.g. "
                                     f"{{ fr = \"ana@example.org\" }}")
                bad = [a for a in self.translator_addresses(lang)
                       if a.count("@") != 1 or any(c in a for c in " <>")]
                if bad or not self.translator_addresses(lang):
                    raise ValueError(f"{lang}: '{addresses}' must be addresses separated by "
                                     f"commas, e.g. \"ana@example.org, ben@example.org\"")
        if key == "deadline":
            parse_duration(self.deadline)
        if key == "machine_translation" and self.machine_translation and \
                not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.machine_translation):
            raise ValueError(f"'{self.machine_translation}' must be 'module:function'")

    def translator_addresses(self, language: str) -> list[str]:
        text = self.translators.get(language, "")
        return [a.strip().lower() for a in text.split(",") if a.strip()]

    @property
    def deadline_seconds(self) -> int:
        return parse_duration(self.deadline)


_LOCAL_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WhatsnewSection:
    """Initiative reports and the What's New bulletin (see digests/)."""

    address: str = "whatsnew"
    schedule: str = "0 6 1,15 * *"
    review: str = "unknown"
    item_length: int = 300

    def check(self, key: str) -> None:
        if key == "address" and not _LOCAL_NAME.match(self.address):
            raise ValueError(f"'{self.address}' must be the part before the @, e.g. 'whatsnew'")
        if key == "schedule":
            check_cron(self.schedule)
        if key == "review" and self.review not in ("unknown", "all"):
            raise ValueError(f"'{self.review}' must be 'unknown' (review reports from "
                             f"addresses that are no forum's members) or 'all'")
        if key == "item_length" and not 40 <= self.item_length <= 5000:
            raise ValueError("must be between 40 and 5000 (characters)")


@dataclass(frozen=True)
class DigestSection:
    """When forum digests go out (see digests/)."""

    time: str = "06:00"
    weekday: str = "mon"
    max_posts: int = 25
    max_bytes: int = 200000
    check_every: str = "1m"

    def check(self, key: str) -> None:
        if key == "check_every" and parse_duration(self.check_every) < 1:
            raise ValueError("must be at least '1s'")
        if key == "time" and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", self.time):
            raise ValueError(f"'{self.time}' must be a time of day like '06:00'")
        if key == "weekday" and self.weekday not in _WEEKDAYS:
            raise ValueError(f"'{self.weekday}' must be one of {', '.join(_WEEKDAYS)}")
        if key in ("max_posts", "max_bytes") and getattr(self, key) < 1:
            raise ValueError("must be at least 1")


@dataclass(frozen=True)
class TemplatesSection:
    """Editing the site's templates by email, and how they are checked (see digests/)."""

    address: str = "templates"
    render_limit: str = "2s"
    check_every: str = "1m"

    def check(self, key: str) -> None:
        if key == "address" and not _LOCAL_NAME.match(self.address):
            raise ValueError(f"'{self.address}' must be the part before the @, e.g. 'templates'")
        if key in ("render_limit", "check_every") and parse_duration(getattr(self, key)) < 1:
            raise ValueError("must be at least '1s'")

    @property
    def render_seconds(self) -> int:
        return parse_duration(self.render_limit)


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
        if key == "domain" and value and not _DOMAIN.match(value):
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


SECTIONS = {
    "site": SiteSection,
    "smtp": SmtpSection,
    "delivery": DeliverySection,
    "web": WebSection,
    "moderation": ModerationSection,
    "relay": RelaySection,
    "whatsnew": WhatsnewSection,
    "digest": DigestSection,
    "templates": TemplatesSection,
    "log": LogSection,


    "dkim": DkimSection,
    "dns": DnsSection,
    "bounces": BouncesSection,
}


@dataclass(frozen=True)
class Settings:
    site: SiteSection = field(default_factory=SiteSection)
    smtp: SmtpSection = field(default_factory=SmtpSection)
    delivery: DeliverySection = field(default_factory=DeliverySection)
    web: WebSection = field(default_factory=WebSection)
    moderation: ModerationSection = field(default_factory=ModerationSection)
    relay: RelaySection = field(default_factory=RelaySection)
    whatsnew: WhatsnewSection = field(default_factory=WhatsnewSection)
    digest: DigestSection = field(default_factory=DigestSection)
    templates: TemplatesSection = field(default_factory=TemplatesSection)
    log: LogSection = field(default_factory=LogSection)


    dkim: DkimSection = field(default_factory=DkimSection)
    dns: DnsSection = field(default_factory=DnsSection)
    bounces: BouncesSection = field(default_factory=BouncesSection)
    source: str = "listserv.toml"

    @property
    def domain(self) -> str:
        return self.site.domain

    @property
    def node_id(self) -> str:
        return self.site.node_id or self.site.domain

    @classmethod
    def from_toml(cls, raw: dict[str, Any], source: str) -> Settings:
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{source}: unknown section [{unknown[0]}]; "
                              f"known sections are {', '.join(f'[{s}]' for s in SECTIONS)}")
        sections = {}
        for name, section_cls in SECTIONS.items():
            table = raw.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            sections[name] = _load_section(section_cls, name, table, source)
        return cls(**sections, source=source)


def _load_section(section_cls, name: str, table: dict, source: str):
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{source}: [{name}] unknown key '{key}'; "
                              f"known keys are {', '.join(fields)}")
        values[key] = _coerce(fields[key], value, f"{source}: [{name}] {key}")
    section = section_cls(**values)
    for key in fields:
        try:
            section.check(key)
        except ValueError as error:
            raise ConfigError(f"{source}: [{name}] {key} {error}") from None
    return section


def _coerce(spec: dataclasses.Field, value: Any, where: str) -> Any:
    kind = str(spec.type)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string in quotes, not {value!r}")
        return value
    if kind.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, e.g. [\"a\", \"b\"]")
        return tuple(value)
    if kind.startswith("dict"):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where} must be a table of strings, e.g. {{ \"example.org\" = "
                              f"\"mx.example.org:25\" }}")
        return dict(value)
    raise AssertionError(f"unhandled setting type {kind}")  # a bug in this module


def load_settings(path: Path) -> Settings:
    """Read `listserv.toml`; ConfigError when it is missing or wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create a site with 'listserv init'") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read: {error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    return Settings.from_toml(raw, source=str(path))
