"""Settings of what the site publishes and moderates: [moderation], [relay],
[whatsnew], [digest] and [templates].

Frozen dataclasses with their defaults; each `check(key)` raises ValueError
for a bad value. Reads nothing itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from listserv.site.cron import check_cron
from listserv.site.settings.values import DOMAIN_NAME, LANGUAGE_CODE, parse_duration


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
            bad = [h for h in self.trusted_hosts if not DOMAIN_NAME.match(h)]
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
            bad = [lang for lang in self.languages if not LANGUAGE_CODE.match(lang)]
            if bad:
                raise ValueError("must list two-letter language codes, e.g. ['fr', 'pt']")
        if key == "translators":
            for lang, addresses in self.translators.items():
                if not LANGUAGE_CODE.match(lang):
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
