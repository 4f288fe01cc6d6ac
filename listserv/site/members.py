"""Members of forums: adding, removing, reading and changing their settings.

Writes the `members` table and `events` (who joined or left, charter
acceptance). Will not send mail: confirmation round trips are in
`subscriptions.py`, which calls `add` once a subscription is confirmed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from listserv.errors import AlreadyExists, ListservError, NotFound
from listserv.mail.addresses import AddressError, check, domain_of
from listserv.mail.values import one_line
from listserv.site.forums import get as get_forum

MODES = ("each", "digest", "nomail")
PROFILES = ("email", "lowband")
FIELDS = ("address", "name", "language", "mode", "profile", "region")


def _clean_name(name: str, what: str = "a member's name") -> str:
    return one_line(name, what, 120)


def check_options(*, language: str | None, mode: str | None, profile: str | None,
                  languages: tuple[str, ...]) -> None:
    if mode is not None and mode not in MODES:
        raise ListservError(f"'{mode}' is not a delivery mode; choose one of {', '.join(MODES)}")
    if profile is not None and profile not in PROFILES:
        raise ListservError(f"'{profile}' is not a profile; choose one of {', '.join(PROFILES)}")
    if language is not None and language not in languages:
        raise ListservError(f"'{language}' is not one of the site's languages "
                            f"({', '.join(languages)})")


def add(db, slug: str, address: str, *, now: datetime, languages: tuple[str, ...],
        name: str = "", language: str | None = None, mode: str = "each",
        profile: str = "email", region: str = "", charter_accepted: bool = False,
        how: str = "admin") -> dict:
    """Make `address` a member of `slug`; AlreadyExists when it is one."""
    try:
        address = check(address)
    except AddressError as error:
        raise ListservError(str(error)) from None
    check_options(language=language, mode=mode, profile=profile, languages=languages)
    with db.atomic():
        forum = get_forum(db, slug)
        if find(db, forum["id"], address):
            raise AlreadyExists(f"{address} is already a member of '{slug}'")
        row = {"forum_id": forum["id"], "address": address, "domain": domain_of(address),
               "name": _clean_name(name), "language": language or forum["language"],
               "region": _clean_name(region, "a region"), "mode": mode, "profile": profile,
               "joined_at": now.isoformat(),
               "charter_accepted_at": now.isoformat() if charter_accepted else None}
        member_id = db["members"].insert(row).last_pk
        record_event(db, now, forum["id"], "subscribed", address, how)
        if charter_accepted:
            record_event(db, now, forum["id"], "charter-accepted", address, how)
    return {"id": member_id, **row}


def remove(db, slug: str, address: str, *, now: datetime, how: str = "admin") -> None:
    with db.atomic():
        forum = get_forum(db, slug)
        member = find(db, forum["id"], address.lower())
        if not member:
            raise NotFound(f"{address} is not a member of '{slug}' "
                           f"(see 'listserv member list {slug}')")
        db.execute("DELETE FROM members WHERE id = ?", [member["id"]])
        record_event(db, now, forum["id"], "unsubscribed", member["address"], how)


def find(db, forum_id: int, address: str) -> dict | None:
    rows = list(db.query("SELECT * FROM members WHERE forum_id = ? AND address = ?",
                         [forum_id, address.lower()]))
    return rows[0] if rows else None


def update(db, member_id: int, changes: dict, languages: tuple[str, ...]) -> None:
    check_options(language=changes.get("language"), mode=changes.get("mode"),
                  profile=changes.get("profile"), languages=languages)
    db["members"].update(member_id, changes)


def iter_members(db, slug: str, batch: int = 1000) -> Iterator[dict]:
    """Every member of a forum in address order, read in bounded batches."""
    forum = get_forum(db, slug)
    last = ""
    while True:
        rows = list(db.query(
            "SELECT address, name, language, mode, profile, region, joined_at, "
            "charter_accepted_at, delivery, bounce_score FROM members "
            "WHERE forum_id = ? AND address > ? "
            "ORDER BY address LIMIT ?", [forum["id"], last, batch]))
        if not rows:
            return
        yield from rows
        last = rows[-1]["address"]


def count(db, forum_id: int) -> int:
    return db.execute("SELECT count(*) FROM members WHERE forum_id = ?", [forum_id]).fetchone()[0]


def read_csv(handle) -> Iterator[tuple[int, dict]]:
    """(line number, row) from an import CSV; ListservError on a bad header."""
    reader = csv.DictReader(handle)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "address" not in header:
        raise ListservError("the CSV file needs a header row with an 'address' column "
                            f"(and any of {', '.join(FIELDS[1:])})")
    unknown = [h for h in header if h not in FIELDS]
    if unknown:
        raise ListservError(f"the CSV column '{unknown[0]}' is not known; "
                            f"use {', '.join(FIELDS)}")
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def import_rows(db, slug: str, rows: Iterable[tuple[int, dict]], *, now: datetime,
                languages: tuple[str, ...]) -> dict:
    """Add members from CSV rows in one transaction per call; returns counts and
    the problems by line. Rows for existing members are skipped, not changed.
    Rows are checked in Python and written with one statement per table, so a
    chunk of a thousand rows costs a few milliseconds, not a thousand inserts."""
    result = {"added": 0, "existing": 0, "problems": []}
    forum = get_forum(db, slug)
    stamp = now.isoformat()
    fresh: dict[str, tuple] = {}
    for line, row in rows:
        try:
            address = check(row.get("address", ""))
            language = row.get("language") or forum["language"]
            mode, profile = row.get("mode") or "each", row.get("profile") or "email"
            check_options(language=language, mode=mode, profile=profile, languages=languages)
            name = _clean_name(row.get("name", ""))
            region = _clean_name(row.get("region", ""), "a region")
        except (AddressError, ListservError) as error:
            result["problems"].append(f"line {line}: {error}")
            continue
        if address in fresh:
            result["existing"] += 1
            continue
        fresh[address] = (forum["id"], address, domain_of(address),
                          name, language, region, mode, profile, stamp)
    with db.atomic():
        known = {r[0] for r in db.execute(
            "SELECT address FROM members WHERE forum_id = ? AND address IN "
            "(SELECT value FROM json_each(?))", [forum["id"], json.dumps(list(fresh))])}
        new = [values for address, values in fresh.items() if address not in known]
        db.conn.executemany(
            "INSERT INTO members (forum_id, address, domain, name, language, region, mode, "
            "profile, joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new)
        db.conn.executemany(
            "INSERT INTO events (at, forum_id, kind, address, detail) "
            "VALUES (?, ?, 'subscribed', ?, 'import')",
            [(stamp, forum["id"], values[1]) for values in new])
    result["added"] = len(new)
    result["existing"] += len(known)
    return result


def record_event(db, now: datetime, forum_id: int | None, kind: str, address: str,
                 detail: str = "") -> None:
    db["events"].insert({"at": now.isoformat(), "forum_id": forum_id, "kind": kind,
                         "address": address, "detail": detail[:500]})
