"""Serving the archive folder on `[web] listen`: safely, and the search form.

`respond(site, path, query)` answers a GET under `/archive/`: a file of the
archive folder (never outside it: no '..', no hidden or odd names, no
symbolic link leading out), with a safe type, and attachments always as
`application/octet-stream` with `Content-Disposition: attachment`; or the
search page (`/archive/search?q=WORDS`) over public archives and initiatives.
Every answer carries a Content-Security-Policy that forbids scripts and
anything from elsewhere. Reads the archive folder and (for search) the
store through a connection of its own; writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, unquote

from listserv.archive.pages import root
from listserv.archive.search import SearchError, public_forums, search
from listserv.site.store import connect

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SAFE_HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY")]
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".atom": "application/atom+xml; charset=utf-8"}
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
MAX_QUERY = 2000


class Answer:
    def __init__(self, status: int, body: bytes, content_type: str = TYPES[".html"],
                 headers: list[tuple[str, str]] | None = None):
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = SAFE_HEADERS + (headers or [])


def _not_found() -> Answer:
    return Answer(404, b"<!doctype html><meta charset=utf-8><title>Not found</title>"
                       b"<p>There is nothing here.</p>")


def find_file(folder: Path, path: str) -> Path | None:
    """The file of the archive `path` (after /archive/) names, or None."""
    segments = [unquote(s) for s in path.split("/")]
    if segments and segments[-1] == "":
        segments[-1] = "index.html"
    if not segments or segments == [""]:
        segments = ["index.html"]
    if any(not _SEGMENT.match(s) or ".." in s for s in segments):
        return None
    candidate = folder.joinpath(*segments)
    try:
        resolved = candidate.resolve(strict=True)
        base = folder.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(base) or not resolved.is_file():
        return None
    if resolved.is_dir():
        return None
    return resolved


def respond(site, path: str, query: str) -> Answer:
    """The answer to GET /archive/<path>?<query>."""
    if path in ("search", "search/"):
        return search_page(site, query)
    folder = root(site)
    found = find_file(folder, path)
    if found is None:
        if found is None and path and "." not in path.rsplit("/", 1)[-1]:
            found = find_file(folder, path.rstrip("/") + "/index.html")
        if found is None:
            return _not_found()
    relative = found.relative_to(folder.resolve())
    if len(relative.parts) >= 3 and relative.parts[1] == "att":
        name = relative.parts[-1].split("-", 2)[-1]
        return Answer(200, found.read_bytes(), "application/octet-stream",
                      [("Content-Disposition", f'attachment; filename="{name}"')])
    kind = TYPES.get(found.suffix)
    if kind is None:
        return _not_found()
    return Answer(200, found.read_bytes(), kind)


def search_page(site, query: str) -> Answer:
    from listserv.archive.pages import page

    asked = " ".join(parse_qs(query[:MAX_QUERY * 4]).get("q", [""])[0].split())[:MAX_QUERY]
    results, problem = [], ""
    if asked:
        db = connect(site.db_path)
        try:
            results = search(db, asked, forums=public_forums(db), initiatives=True)
        except SearchError as error:
            problem = str(error)
        finally:
            db.conn.close()
    html = page(site, "archive-search.html", site.settings.site.default_language, up="",
                query=asked, problem=problem, results=results)
    return Answer(200, html.encode("utf-8"))
