"""The site's settings: `listserv.toml` read once into frozen dataclasses.

Reads the TOML file; writes nothing. Every section checks its own keys:
unknown keys, wrong types and bad values raise ConfigError naming the file,
the section, the key and how to fix it. The sections live beside this file
(`edge.py`, `publishing.py`, `operations.py`, shared values in `values.py`);
their defaults are, with a comment each, in the shipped `config/listserv.toml`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listserv.errors import ConfigError
from listserv.site.settings.edge import DeliverySection, SiteSection, SmtpSection, WebSection
from listserv.site.settings.operations import BouncesSection, DkimSection, DnsSection, LogSection
from listserv.site.settings.publishing import (DigestSection, ModerationSection, RelaySection,
                                               TemplatesSection, WhatsnewSection)
from listserv.site.settings.values import LANGUAGES, parse_duration, parse_hostport

__all__ = ["SECTIONS", "Settings", "load_settings", "LANGUAGES", "parse_duration",
           "parse_hostport", "SiteSection", "SmtpSection", "DeliverySection", "WebSection",
           "ModerationSection", "RelaySection", "WhatsnewSection", "DigestSection",
           "TemplatesSection", "LogSection", "DkimSection", "DnsSection", "BouncesSection"]

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
