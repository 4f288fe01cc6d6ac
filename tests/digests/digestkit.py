"""Helpers of the digests/ tests: a populated hub, config edits, reading mail."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from helpers import make_site, wait_until  # noqa: F401 (wait_until: for the digest tests)

from listserv.site import forums, members
from listserv.site.folder import Site

FORUMS = [("sahel", "Sahel network", "geocultural", "fr"),
          ("farmers", "Farmers' network", "socioprofessional", "es"),
          ("water", "Water commons", "thematic", "en")]
PEOPLE = [("sahel", "moussa@example.org", "Moussa", "fr", "each", "email"),
          ("sahel", "ibrahim@example.net", "Ibrahim", "fr", "each", "lowband"),
          ("farmers", "lucia@example.org", "Lucía", "es", "each", "email"),
          ("water", "amina@example.org", "Amina", "en", "each", "email"),
          ("water", "priya@example.net", "Priya", "en", "nomail", "email"),
          ("farmers", "amina@example.org", "Amina", "pt", "each", "email")]


def set_key(folder: Path, section: str, key: str, value: str) -> None:
    """Set `key = value` (TOML) in [section] of the site's listserv.toml."""
    path = folder / "listserv.toml"
    text = path.read_text()
    head, sep, rest = text.partition(f"[{section}]\n")
    assert sep, f"no [{section}] in {path}"
    rest, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", rest, count=1, flags=re.M)
    assert found, f"no {key} in [{section}]"
    path.write_text(head + sep + rest)


def populate(folder: Path, people=PEOPLE) -> None:
    """Forums and confirmed members, written with the real code in this process."""
    site = Site(folder)
    now = datetime.now(timezone.utc)
    for slug, title, path, language in FORUMS:
        if forums.find(site.db, slug):
            continue
        forums.create(site.db, slug, title=title, path=path, language=language, now=now,
                      policy="members")
    runs: list[tuple[str, list]] = []  # consecutive rows of one forum, in the given order
    for line, (slug, address, name, language, mode, profile) in enumerate(people, 2):
        if not runs or runs[-1][0] != slug:
            runs.append((slug, []))
        runs[-1][1].append((line, {"address": address, "name": name, "language": language,
                                   "mode": mode, "profile": profile}))
    for slug, rows in runs:
        done = members.import_rows(site.db, slug, rows, now=now,
                                   languages=site.settings.site.languages)
        assert not done["problems"], done["problems"]
    site.db.conn.close()


def make_hub(tmp_path, sink) -> Path:
    """A site delivering to the sink, checking often, with forums and members."""
    folder = make_site(tmp_path, sink)
    set_key(folder, "digest", "check_every", '"1s"')
    set_key(folder, "templates", "check_every", '"1s"')
    populate(folder)
    return folder


def query(folder: Path, sql: str, params=()) -> list:
    site = Site(folder)
    try:
        return [tuple(row) for row in site.db.execute(sql, params).fetchall()]
    finally:
        site.db.conn.close()


def text_of(message) -> str:
    """The text/plain part of a message (the first one)."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_content()
    raise AssertionError("no text/plain part")


def html_of(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            return part.get_content()
    raise AssertionError("no text/html part")


def report(sender: str, subject: str, body: str, name: str = "", extra: str = "") -> str:
    author = f"{name} <{sender}>" if name else sender
    return (f"From: {author}\nTo: whatsnew@lists.example.org\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash((sender, subject, body)))}@example.org>\n{extra}\n{body}")


def cli_json(result) -> list | dict:
    return json.loads(result.stdout)
