"""The site's templates: every version kept, only checked ones used.

Three places: `templates/xx/NAME` in the site folder is the secretariat's
working copy (edited by hand, or written when a version is activated by
email or rolled back); `data/templates/xx/NAME` (`site.active_templates`)
is the copy mail is rendered from, only ever a checked version; and
`template_versions` is the record: every version with its status
('active': in use, one per language and name; 'superseded'; 'broken': a
hand edit that failed its check; 'proposed' and 'refused': sent by email).
A version whose source is NULL means "the shipped default".

`scan` (reading only, so it can run off the writer thread: checks can take
seconds) finds working copies that differ from the active version and
checks them; `apply` activates the good ones and records the broken ones,
telling the secretariat once per broken text; the last good version stays
in use. `sync` does both for the command line. `rollback` activates the
version before the current one (or a chosen one, or the shipped default).
Writes `template_versions`, both template folders and, for notices, the
outbound queue.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digests.mailing import render_for, send, site_address
from digests.slots import iso
from digests.template_check import (Checked, check_template, editable_names, shipped_source,
                                     site_template_names)
from listserv.errors import ListservError, NotFound
from listserv.site import store

log = logging.getLogger(__name__)


def sha(source: str | None) -> str:
    return "shipped" if source is None else hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass
class Change:
    """A working copy that differs from the active version, and its check."""

    language: str
    name: str
    source: str | None  # None: the working copy was removed
    active_sha: str
    checked: Checked | None = None


def active_version(db, language: str, name: str) -> dict | None:
    rows = list(db.query("SELECT * FROM template_versions WHERE language = ? AND name = ? "
                         "AND status = 'active' ORDER BY id DESC LIMIT 1", [language, name]))
    return rows[0] if rows else None


def working_path(site, language: str, name: str) -> Path:
    return site.templates / language / name


def read_working(site, language: str, name: str) -> str | None:
    path = working_path(site, language, name)
    if not path.is_file():
        return None
    return path.read_bytes().decode("utf-8", "replace")


def _write(path: Path, source: str | None) -> None:
    """Write (or, for None, remove) a template file atomically."""
    if source is None:
        path.unlink(missing_ok=True)
        return
    if path.is_file() and path.read_bytes() == source.encode("utf-8"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(source, encoding="utf-8")
    os.replace(temporary, path)


def scan(site, db=None) -> list[Change]:
    """Working copies that differ from their active version, each checked.
    Opens its own connection when `db` is not given (for a worker thread)."""
    own = db is None
    db = store.connect(site.db_path) if own else db
    try:
        changes = []
        for language in site.settings.site.languages:
            for name in sorted(site_template_names()):
                source = read_working(site, language, name)
                active = active_version(db, language, name)
                active_sha = active["sha"] if active else "shipped"
                if sha(source) == active_sha:
                    continue
                if source is None and active is None:
                    continue
                known_broken = db.execute(
                    "SELECT 1 FROM template_versions WHERE language = ? AND name = ? AND "
                    "sha = ? AND status = 'broken'", [language, name, sha(source)]).fetchone()
                if known_broken:
                    continue
                change = Change(language, name, source, active_sha)
                if source is not None:
                    change.checked = check_template(site, language, name, source)
                changes.append(change)
        return changes
    finally:
        if own:
            db.conn.close()


def apply(db, site, changes: list[Change], now: datetime) -> list[dict]:
    """Activate the good changes and record the broken ones (telling the
    secretariat); returns what was done, one dict per change."""
    done = []
    for change in changes:
        active = active_version(db, change.language, change.name)
        if (active["sha"] if active else "shipped") != change.active_sha:
            continue  # someone activated another version meanwhile; the next scan sees it
        label = f"{change.language}/{change.name}"
        if change.checked is None or change.checked.ok:
            version = activate(db, site, change.language, change.name, change.source,
                               via="file", by="", now=now)
            done.append({"label": label, "outcome": "activated", "version": version})
            continue
        version = db["template_versions"].insert({
            "language": change.language, "name": change.name, "source": change.source,
            "sha": sha(change.source), "status": "broken", "via": "file",
            "error": "\n".join(change.checked.errors)[:2000], "created_at": iso(now)}).last_pk
        _tell_secretariat(db, site, label, version, change.checked.errors, active, now)
        log.error("template %s is broken; the last good version stays in use: %s", label,
                  change.checked.errors[0])
        done.append({"label": label, "outcome": "broken", "version": version,
                     "errors": change.checked.errors})
    ensure_active_files(db, site)
    return done


def sync(site, now: datetime) -> list[dict]:
    """scan + apply, for the command line (no server writer needed)."""
    changes = scan(site, site.db)
    return site.write_now(apply, site, changes, now)


def activate(db, site, language: str, name: str, source: str | None, *, via: str, by: str,
             now: datetime, version_id: int | None = None) -> int:
    """Make `source` (None: the shipped default) the active version; writes the
    working copy and the checked copy. Returns the version's id."""
    previous = active_version(db, language, name)
    if version_id is None:
        version_id = db["template_versions"].insert({
            "language": language, "name": name, "source": source, "sha": sha(source),
            "status": "active", "via": via, "by": by, "created_at": iso(now),
            "activated_at": iso(now)}).last_pk
    else:
        db["template_versions"].update(version_id, {"status": "active", "by": by,
                                                    "activated_at": iso(now)})
    if previous and previous["id"] != version_id:
        db["template_versions"].update(previous["id"], {"status": "superseded"})
    _write(working_path(site, language, name), source)
    _write(site.active_templates / language / name, source)
    log.info("template %s/%s version %s activated (%s%s)", language, name, version_id, via,
             f" by {by}" if by else "")
    return version_id


def ensure_active_files(db, site) -> None:
    """Make the checked copies exactly the active versions (after a crash, or
    on a site whose copies were lost)."""
    wanted = {}
    for row in db.query("SELECT language, name, source FROM template_versions WHERE "
                        "status = 'active' ORDER BY id"):
        wanted[(row["language"], row["name"])] = row["source"]
    for (language, name), source in wanted.items():
        _write(site.active_templates / language / name, source)
    root = site.active_templates
    if root.is_dir():
        for path in root.glob("*/*"):
            if path.is_file() and (path.parent.name, path.name) not in wanted:
                path.unlink()


def _tell_secretariat(db, site, label: str, version: int, errors: list[str],
                      active: dict | None, now: datetime) -> None:
    secretariat = list(site.settings.site.secretariat)
    if not secretariat:
        return
    fallback = f"version {active['id']} of {active['activated_at'][:10]}" \
        if active and active["source"] is not None else ""
    subject, text = render_for(site, "template-broken.txt", site.settings.site.default_language,
                               label=label, version=version, errors=errors, fallback=fallback)
    send(db, site, to=secretariat, subject=subject, text=text, now=now,
         ref=f"template-broken:{version}", sender=site_address(site, "templates"))


def history(db, name: str, language: str | None = None) -> list[dict]:
    sql = ("SELECT id AS version, language, name, status, via, by, created_at, activated_at, "
           "error, source IS NULL AS shipped FROM template_versions WHERE name = ?")
    params: list = [name]
    if language:
        sql += " AND language = ?"
        params.append(language)
    rows = list(db.query(sql + " ORDER BY id DESC", params))
    if not rows and name not in site_template_names():
        raise NotFound(f"no template '{name}' (see 'listserv templates list')")
    return rows


def rollback(db, site, name: str, language: str, now: datetime, by: str,
             to: int | None = None) -> dict:
    """Activate the good version before the active one (or version `to`; 0 is the
    shipped default) as a new version; returns {from, to, version}."""
    if name not in site_template_names():
        raise NotFound(f"no template '{name}' (see 'listserv templates list')")
    good = list(db.query("SELECT * FROM template_versions WHERE language = ? AND name = ? AND "
                         "status IN ('active', 'superseded') ORDER BY id DESC",
                         [language, name]))
    current = good[0] if good and good[0]["status"] == "active" else None
    if to == 0:
        target = None
    elif to is not None:
        matches = [row for row in good if row["id"] == to]
        if not matches:
            raise ListservError(f"version {to} of {language}/{name} was never active; see "
                                f"'listserv templates history {name} --language {language}'")
        target = matches[0]
    else:
        if current is None or current["source"] is None and len(good) < 2:
            raise ListservError(f"{language}/{name} is the shipped default; there is nothing "
                                f"to roll back")
        older = [row for row in good[1:] if row["sha"] != current["sha"]]
        target = older[0] if older else None
    source = target["source"] if target else None
    if target is not None:
        checked = check_template(site, language, name, source)
        if not checked.ok:  # something it includes has changed since
            raise ListservError(f"version {target['id']} no longer passes its check: "
                                f"{checked.errors[0]}")
    version = activate(db, site, language, name, source, via="rollback", by=by, now=now)
    return {"from": current["id"] if current else None,
            "to": target["id"] if target else "shipped", "version": version}


def overview(db, site) -> list[dict]:
    """One row per template and site language: where it comes from, and whether
    the working copy is broken."""
    rows = []
    broken = {(r["language"], r["name"], r["sha"]): r["id"] for r in db.query(
        "SELECT id, language, name, sha FROM template_versions WHERE status = 'broken'")}
    for name in sorted(editable_names()):
        for language in site.settings.site.languages:
            active = active_version(db, language, name)
            working = read_working(site, language, name)
            state = "ok"
            if (language, name, sha(working)) in broken:
                state = "broken"
            elif working is not None and sha(working) != (active["sha"] if active else ""):
                state = "unchecked"
            rows.append({"name": name, "language": language,
                         "source": "site" if active and active["source"] is not None
                         else ("shipped" if shipped_source(name, language) else "shipped (en)"),
                         "version": active["id"] if active else None, "state": state})
    return rows


def problems(db, site) -> list[dict]:
    """Working copies that are broken right now (the last good version is in use)."""
    found, seen = [], set()
    for row in db.query("SELECT id, language, name, sha, error, created_at FROM "
                        "template_versions WHERE status = 'broken' ORDER BY id DESC"):
        key = (row["language"], row["name"])
        if key not in seen and sha(read_working(site, *key)) == row["sha"]:
            seen.add(key)
            found.append({"label": f"{row['language']}/{row['name']}", "version": row["id"],
                          "since": row["created_at"], "error": row["error"].split("\n")[0]})
    return found
