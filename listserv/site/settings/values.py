"""Values shared by the settings sections: durations, host:port, domains, languages.

Pure parsing; reads and writes nothing. Raises ValueError with the words a
section check puts after the key's name.
"""

from __future__ import annotations

import re

LANGUAGES = ("en", "fr", "es", "pt")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
DOMAIN_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")


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
