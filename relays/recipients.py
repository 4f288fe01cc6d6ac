"""A relay's own recipients: lowband email readers and postal addresses.

A `lowband` recipient is an email address with a language and a byte budget
(each message to them is at most that big). A `postal` recipient is a name,
a postal address and a country (two-letter code): printed on labels at the
relay, never sent anywhere, the hub included. Writes `relay_recipients`.
"""

from __future__ import annotations

import re
from datetime import datetime

from listserv.errors import AlreadyExists, ListservError, NotFound
from listserv.mail.addresses import AddressError, check

PROFILES = ("lowband", "postal")
MIN_BUDGET = 1500
MAX_ADDRESS_LINES = 5  # with the name and the country: the 7 lines of a label
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def add_recipient(db, site, who: str, *, profile: str, now: datetime, language: str = "",
                  name: str = "", postal_address: str = "", country: str = "",
                  budget: int | None = None) -> dict:
    """Add a recipient; returns its row."""
    settings = site.settings
    if settings.site.role != "relay":
        raise ListservError("recipients belong to relay nodes; this site is a hub "
                            "(its members are added with 'listserv member add')")
    if profile not in PROFILES:
        raise ListservError(f"--profile '{profile}' must be 'lowband' or 'postal'")
    languages = settings.site.languages
    language = language or settings.site.default_language
    if language not in languages:
        raise ListservError(f"--language '{language}' is not one of this site's languages "
                            f"({', '.join(languages)}; see [site] languages)")
    row = {"profile": profile, "language": language, "created_at": now.isoformat()}
    if profile == "lowband":
        try:
            row["address"] = check(who)
        except AddressError as error:
            raise ListservError(f"a lowband recipient needs an email address: {error}") \
                from None
        if postal_address or country:
            raise ListservError("a lowband recipient has no postal address; add a separate "
                                "postal recipient for that")
        budget = settings.delivery.lowband_budget if budget is None else budget
        if budget < MIN_BUDGET:
            raise ListservError(f"--budget {budget} is too small: at least {MIN_BUDGET} bytes")
        row.update({"name": name.strip()[:200], "budget": budget})
        if db.execute("SELECT 1 FROM relay_recipients WHERE profile = 'lowband' AND "
                      "address = ?", [row["address"]]).fetchone():
            raise AlreadyExists(f"{row['address']} is already a lowband recipient")
    else:
        country = country.strip().upper()
        if not postal_address.strip() or not _COUNTRY.match(country):
            raise ListservError("a postal recipient needs --postal-address TEXT (lines "
                                "separated by ';') and --country CC, e.g. --country ML")
        if budget is not None:
            raise ListservError("--budget is for lowband recipients")
        lines = [line for line in re.split(r"[;\n]", postal_address) if line.strip()]
        if len(lines) > MAX_ADDRESS_LINES:
            raise ListservError(f"--postal-address has {len(lines)} lines; a label holds "
                                f"{MAX_ADDRESS_LINES} besides the name and the country")
        row.update({"address": None, "name": (name or who).strip()[:200],
                    "postal_address": postal_address.strip()[:1000], "country": country})
    row["id"] = db["relay_recipients"].insert(row).last_pk
    return row


def list_recipients(db, profile: str | None = None):
    sql = "SELECT * FROM relay_recipients"
    params: list = []
    if profile:
        sql += " WHERE profile = ?"
        params.append(profile)
    return db.query(sql + " ORDER BY profile, country, language, id", params)


def remove_recipient(db, recipient_id: int) -> dict:
    rows = list(db.query("SELECT * FROM relay_recipients WHERE id = ?", [recipient_id]))
    if not rows:
        raise NotFound(f"recipient {recipient_id} does not exist (see 'listserv recipient "
                       f"list')")
    db.execute("DELETE FROM relay_recipients WHERE id = ?", [recipient_id])
    return rows[0]
