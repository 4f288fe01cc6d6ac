"""Sample data for the archive's web page templates (archive-*.html), to check them.

`page_context(site, name, language)` gives what pages.py and bank.py pass to
template `name` (same names and shapes), with a hostile subject and author in
it so the check sees that the page escapes them; None for a name that is not
a page template. Used by `listserv templates check`. Reads the settings;
writes nothing.
"""

from __future__ import annotations

from listserv.archive.pages import LABEL_KEYS

HOSTILE = '<script>alert("sample")</script> & "quotes"'
FORUM = {"id": 1, "slug": "peace", "title": "Peace workshop", "path": "thematic",
         "language": "en", "archive": "public", "subscription": "open",
         "description": "Sharing what works for peace."}
SUMMARY = {"id": 7, "subject": HOSTILE, "author": "Ana <b>S.</b>", "date": "2026-12-02 09:00",
           "depth": 1, "thread": 5, "month": "2026-12"}
POST = {**SUMMARY, "ref": "peace-7", "text": "Two wells by the school.\n{{ config }}",
        "html": "<p>Two wells <b>by the school</b>.</p>"}
INITIATIVE = {"id": 42, "title": "A seed bank", "text": "Forty varieties of millet.",
              "link": "https://example.org/seeds", "region": "Mali", "path": "geocultural",
              "forum": "peace", "forum_title": "Peace workshop", "archive": "public",
              "language": "fr", "happens": "every Saturday", "month": "2026-11",
              "accepted_at": "2026-11-20", "issue": 17}
ENTRY = {"id": 42, "title": "A seed bank", "region": "Mali", "forum_title": "Peace workshop",
         "month": "2026-11"}


def page_context(site, name: str, language: str) -> dict | None:
    """What page template `name` is given, with sample values; None if not a page."""
    common = {"labels": {key: key.replace("_", " ") for key in LABEL_KEYS},
              "site_name": site.settings.site.name, "domain": site.settings.domain,
              "lang": language, "up": "../"}
    pages = {
        "archive-layout.html": {},
        "archive-post.html": {"forum": FORUM, "post": POST, "parent": SUMMARY,
                              "replies": [SUMMARY], "previous": SUMMARY, "next": SUMMARY,
                              "attachments": [{"number": 1, "name": "plan.pdf",
                                               "file": "att/7-1-plan.pdf",
                                               "type": "application/pdf", "size": 1200}]},
        "archive-thread.html": {"forum": FORUM, "posts": [POST, {**POST, "html": ""}],
                                "thread": {"id": 5, "subject": HOSTILE, "ref": "peace-t5",
                                           "month": "2026-12"}},
        "archive-month.html": {"forum": FORUM, "month": "2026-12", "count": 2,
                               "previous": "2026-11", "next": None,
                               "threads": [{"id": 5, "posts": [SUMMARY, SUMMARY]}]},
        "archive-forum.html": {"forum": FORUM, "members": 12,
                               "months": [{"month": "2026-12", "count": 2}],
                               "threads": [{"id": 5, "subject": HOSTILE, "date": "2026-12-02",
                                            "count": 2}],
                               "join": "peace-join@lists.example.org",
                               "request": "peace-request@lists.example.org"},
        "archive-directory.html": {"up": "", "languages": ["en", "fr"], "groups": [
            {"path": "thematic", "forums": [{**FORUM, "members": 12,
                                             "join": "peace-join@lists.example.org"}]},
            {"path": "geocultural", "forums": []}]},
        "archive-search.html": {"up": "", "query": HOSTILE, "problem": "", "results": [
            {"kind": "post", "ref": "peace-7", "title": HOSTILE, "forum": "peace",
             "date": "2026-12-02", "url": "peace/7.html"},
            {"kind": "initiative", "ref": "INIT-42", "title": "A seed bank", "forum": "",
             "date": "", "url": "initiatives/42.html"}]},
        "archive-bank.html": {"count": 1, "by": {key: [{"name": value, "entries": [ENTRY]},
                                                       {"name": "", "entries": [ENTRY]}]
                                                 for key, value in (
                                                     ("path", "geocultural"),
                                                     ("region", "Mali"), ("forum", "peace"),
                                                     ("month", "2026-11"))}},
        "archive-initiative.html": {"initiative": INITIATIVE},
        "archive-issue.html": {"issue": {"number": 17, "title": "What's New 17",
                                         "end": "2026-12-01", "count": 1, "sections": [
                                             {"heading": "Regions", "subheading": "Mali",
                                              "items": [{"ref": "INIT-42", "title": HOSTILE,
                                                         "text": "Seeds.",
                                                         "region": "Mali"}]}]}},
    }
    if name not in pages:
        return None
    return {**common, **pages[name]}
