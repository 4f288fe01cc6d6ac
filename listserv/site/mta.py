"""Postfix maps: which addresses the site takes mail for, and where Postfix hands it.

Writes two files into a folder (default: the site's data/postfix/): `transport`
(the list domain to listserv's `[smtp] listen`, by LMTP or SMTP as
`[smtp] protocol` says) and `relay_recipients` (every address the intake
accepts at RCPT, so Postfix refuses the rest at its own RCPT and never
bounces later). Each is written to a temporary file and renamed, so Postfix
never reads half a map. Also gives the `postmap` commands and `main.cf`
lines to use. `refresh_maps` rewrites maps that were written before (by
`listserv mta postfix`, in the default folder) and runs `postmap` on them
when it is on this machine, so Postfix sees a new forum at once; `serve`
calls it at start and the forum commands after a change. Will not touch
Postfix's own configuration.

The caller passes the site addresses (`whatsnew`, `templates`, `relay`...)
that the other packages add; this module does not import them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from listserv.errors import ListservError
from listserv.site.settings import parse_hostport

FORUM_SUFFIXES = ("", "-request", "-join", "-leave", "-owner", "-bounces", "-confirm")
ALWAYS = ("postmaster", "abuse", "listserv-bounces")  # accepted by intake on every site
TRANSPORT = "transport"
RECIPIENTS = "relay_recipients"

log = logging.getLogger(__name__)


def recipients(domain: str, slugs, site_addresses) -> list[str]:
    """Every address at `domain` the intake accepts; a `+detail` is left to
    Postfix's `recipient_delimiter = +`."""
    names = set(ALWAYS) | set(site_addresses)
    for slug in slugs:
        names.update(slug + suffix for suffix in FORUM_SUFFIXES)
    return [f"{name}@{domain}" for name in sorted(names)]


def next_hop(listen: str, protocol: str) -> str:
    """The Postfix transport for listserv's listener, e.g. `lmtp:inet:127.0.0.1:8025`."""
    host, port = parse_hostport(listen)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    if protocol == "lmtp":
        return f"lmtp:inet:{shown}:{port}"
    return f"smtp:[{host}]:{port}"


def main_cf_lines(domain: str, folder: Path) -> list[str]:
    """The `main.cf` lines that put Postfix in front of listserv with these maps."""
    return [
        f"relay_domains = {domain}",
        f"transport_maps = hash:{folder / TRANSPORT}",
        f"relay_recipient_maps = hash:{folder / RECIPIENTS}",
        "recipient_delimiter = +",
        # A tokened address (peace-confirm+TOKEN) passes the map by its base name;
        # Postfix asks serve at RCPT (a probe by LMTP) before it takes the mail, so a
        # forged token gets its 550 from Postfix and no bounce goes to anyone.
        f"smtpd_recipient_restrictions = reject_unlisted_recipient, check_recipient_access "
        f"inline:{{ {{ {domain} = reject_unverified_recipient }} }}, "
        f"permit_mynetworks, reject_unauth_destination",
        "unverified_recipient_reject_code = 550",
        "unverified_recipient_reject_reason = no such address or code here",
    ]


def smarthost_lines(listen: str) -> list[str]:
    """What listserv.toml says to send out through this Postfix."""
    return ["[delivery]", f'smarthost = "{listen}"']


def _write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_maps(folder: Path, domain: str, hop: str, addresses: list[str]) -> list[Path]:
    """Write both maps into `folder` (made if missing); returns their paths."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(str(folder))
        transport = folder / TRANSPORT
        table = folder / RECIPIENTS
        _write(transport, f"# written by listserv mta postfix; do not edit\n{domain} {hop}\n")
        _write(table, "# written by listserv mta postfix; do not edit\n"
               + "".join(f"{address} OK\n" for address in addresses))
    except OSError as error:
        raise ListservError(f"cannot write the Postfix maps in {folder}: "
                            f"{error.strerror or error}") from None
    return [transport, table]


def site_maps(site, site_addresses, folder: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the maps for `site`'s forums; returns (folder, paths)."""
    settings = site.settings
    folder = folder or site.folder / "data" / "postfix"
    slugs = [row[0] for row in site.db.execute("SELECT slug FROM forums ORDER BY slug")]
    hop = next_hop(settings.smtp.listen, settings.smtp.protocol)
    addresses = recipients(settings.domain, slugs, site_addresses)
    return folder, write_maps(folder, settings.domain, hop, addresses)


def run_postmap(paths: list[Path]) -> bool:
    """`postmap` each map, when Postfix's `postmap` is on this machine; True when
    it ran for all. A failure is one ListservError line with postmap's words."""
    postmap = shutil.which("postmap") or ("/usr/sbin/postmap"
                                          if os.path.exists("/usr/sbin/postmap") else None)
    if postmap is None:
        return False
    for path in paths:
        try:
            result = subprocess.run([postmap, str(path)], capture_output=True, text=True,
                                    timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ListservError(f"postmap {path} did not run: {error}") from None
        if result.returncode != 0:
            words = (result.stderr or result.stdout).strip().splitlines()
            raise ListservError(f"postmap {path} failed: {words[-1] if words else result.returncode}")
    return True


def refresh_maps(site, site_addresses) -> list[Path]:
    """Rewrite the maps in the default folder if they were written there before,
    and postmap them; [] when the site has no Postfix maps."""
    folder = site.folder / "data" / "postfix"
    if not (folder / RECIPIENTS).exists():
        return []
    _, paths = site_maps(site, site_addresses, folder)
    if run_postmap(paths):
        log.info("rewrote and postmapped the Postfix maps in %s", folder)
    else:
        log.info("rewrote the Postfix maps in %s; postmap is not on this machine", folder)
    return paths
