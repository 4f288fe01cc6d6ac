"""Forums: creating, reading and editing them, and their facilitators.

Writes the `forums` and `facilitators` tables. Will not touch members or
posts; deleting forums is not offered (their archives and holds matter).
"""

from __future__ import annotations

from datetime import datetime

from listserv.errors import AlreadyExists, ListservError, NotFound
from listserv.mail.addresses import AddressError, check, check_slug
from listserv.mail.values import one_line

PATHS = ("thematic", "socioprofessional", "geocultural")
POLICIES = ("open", "members", "moderated", "announce")
DIGESTS = ("daily", "weekly", "never")
SUBSCRIPTIONS = ("open", "approve")
CONTENT = ("html", "text")
ARCHIVES = ("public", "members", "none")  # who may read what was said: see listserv/archive/
DMARC = ("auto", "munge", "wrap", "none")
EDITABLE = ("title", "path", "language", "policy", "charter", "digest", "subscription",
            "content", "description", "archive_url", "archive", "dmarc")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ListservError(f"'{value}' is not a {what}; choose one of {', '.join(allowed)}")
    return value


def _check_fields(fields: dict, languages: tuple[str, ...]) -> dict:
    if "title" in fields:
        title = one_line(fields["title"], "a forum title", 200)
        if not title:
            raise ListservError("a forum title must be 1 to 200 characters on one line")
        fields["title"] = title
    if "path" in fields:
        _choice(fields["path"], PATHS, "forum path")
    if "policy" in fields:
        _choice(fields["policy"], POLICIES, "posting policy")
    if "digest" in fields:
        _choice(fields["digest"], DIGESTS, "digest schedule")
    if "subscription" in fields:
        _choice(fields["subscription"], SUBSCRIPTIONS, "subscription policy")
    if "content" in fields:
        _choice(fields["content"], CONTENT, "content policy")
    if "archive" in fields:
        _choice(fields["archive"], ARCHIVES, "archive policy")
    if "dmarc" in fields:
        _choice(fields["dmarc"], DMARC, "DMARC mitigation")
    if "language" in fields and fields["language"] not in languages:
        raise ListservError(f"'{fields['language']}' is not one of the site's languages "
                            f"({', '.join(languages)}); add it to [site] languages first")
    if "charter" in fields:
        fields["charter"] = int(bool(fields["charter"]))
    for key, what in (("description", "a forum description"),
                      ("archive_url", "an archive address")):
        if key in fields:
            fields[key] = one_line(fields[key], what, 1000)
    return fields


def create(db, slug: str, *, title: str, path: str, now: datetime,
           languages: tuple[str, ...] = ("en", "fr", "es", "pt"), language: str = "en",
           policy: str = "members", facilitators: tuple[str, ...] = (), charter: bool = True,
           digest: str = "weekly", subscription: str = "open", content: str = "html",
           description: str = "", archive: str | None = None,
           dmarc: str = "auto") -> dict:
    """Create a forum; AlreadyExists when the slug is taken. Its archive is
    `public` when anyone may subscribe, else `members`, unless `archive` says."""
    try:
        check_slug(slug)
        addresses = [check(a) for a in facilitators]
    except AddressError as error:
        raise ListservError(str(error)) from None
    fields = _check_fields({"title": title, "path": path, "language": language,
                            "policy": policy, "charter": charter, "digest": digest,
                            "subscription": subscription, "content": content,
                            "description": description, "dmarc": dmarc,
                            "archive": archive or ("public" if subscription == "open"
                                                   else "members")}, languages)
    with db.atomic():
        if db.execute("SELECT 1 FROM forums WHERE slug = ?", [slug]).fetchone():
            raise AlreadyExists(f"forum '{slug}' already exists (see 'listserv forum show {slug}')")
        forum_id = db["forums"].insert({"slug": slug, "created_at": now.isoformat(),
                                        "archive_url": "", **fields}).last_pk
        for address in addresses:
            db["facilitators"].insert({"forum_id": forum_id, "address": address}, ignore=True)
    return get(db, slug)


def get(db, slug: str) -> dict:
    """The forum row with its facilitators; NotFound names the way out."""
    rows = list(db.query("SELECT * FROM forums WHERE slug = ?", [slug]))
    if not rows:
        raise NotFound(f"forum '{slug}' does not exist (see 'listserv forum list')")
    forum = rows[0]
    forum["facilitators"] = facilitators(db, forum["id"])
    return forum


def find(db, slug: str) -> dict | None:
    try:
        return get(db, slug)
    except NotFound:
        return None


def facilitators(db, forum_id: int) -> list[str]:
    return [row[0] for row in db.execute(
        "SELECT address FROM facilitators WHERE forum_id = ? ORDER BY address", [forum_id])]


def list_forums(db) -> list[dict]:
    rows = list(db.query(
        "SELECT f.*, (SELECT count(*) FROM members m WHERE m.forum_id = f.id) AS members, "
        "(SELECT count(*) FROM holds h WHERE h.forum_id = f.id AND h.status = 'held') AS held "
        "FROM forums f ORDER BY f.slug"))
    for row in rows:
        row["facilitators"] = facilitators(db, row["id"])
    return rows


def edit(db, slug: str, changes: dict, *, languages: tuple[str, ...],
         add_facilitators: tuple[str, ...] = (), remove_facilitators: tuple[str, ...] = ()) -> dict:
    """Change a forum's settings and facilitators."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ListservError(f"cannot edit '{sorted(unknown)[0]}'; editable: {', '.join(EDITABLE)}")
    try:
        added = [check(a) for a in add_facilitators]
        removed = [check(a) for a in remove_facilitators]
    except AddressError as error:
        raise ListservError(str(error)) from None
    fields = _check_fields(dict(changes), languages)
    with db.atomic():
        forum = get(db, slug)
        if fields:
            db["forums"].update(forum["id"], fields)
        for address in added:
            db["facilitators"].insert({"forum_id": forum["id"], "address": address}, ignore=True)
        for address in removed:
            db.execute("DELETE FROM facilitators WHERE forum_id = ? AND address = ?",
                       [forum["id"], address])
    return get(db, slug)


def is_facilitator(db, forum_id: int, address: str) -> bool:
    return db.execute("SELECT 1 FROM facilitators WHERE forum_id = ? AND address = ?",
                      [forum_id, address.lower()]).fetchone() is not None


def has_charter(forum: dict) -> bool:
    return bool(forum["charter"])
