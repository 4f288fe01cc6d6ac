"""What `get REF` and `index` by email return on a hub: full texts.

`fetch(db, site, ref, language)` is the Extensions.fetch hook: `INIT-42`
gives the whole text of an accepted initiative (never one waiting for
review or rejected), `WN-17` the whole of What's New issue 17 with every
item in full, `index` the list of issues that can be fetched; anything else
gives None. Texts are rendered in `language` from templates
(`initiative-document.txt`, `whatsnew-issue.txt`, `whatsnew-index.txt`).
Reads `initiatives` and `publications`; writes nothing.
"""

from __future__ import annotations

import re

from digests import publications
from digests.mailing import render_for
from digests.whatsnew import key_of, render_issue

INDEX_SIZE = 12
_INIT = re.compile(r"^INIT-?(\d{1,9})$")
_ISSUE = re.compile(r"^WN-?(\d{1,9})$")


def fetch(db, site, ref: str, language: str) -> tuple[str, str] | None:
    wanted = ref.strip().upper()
    if wanted == "INDEX":
        return index(db, site, language)
    match = _INIT.match(wanted)
    if match:
        return initiative_document(db, site, int(match.group(1)), language)
    match = _ISSUE.match(wanted)
    if match:
        return issue_document(db, site, int(match.group(1)), language)
    return None


def initiative_document(db, site, number: int, language: str) -> tuple[str, str] | None:
    rows = list(db.query("SELECT * FROM initiatives WHERE id = ? AND status = 'accepted'",
                         [number]))
    if not rows:
        return None
    row = rows[0]
    forum = db.execute("SELECT title FROM forums WHERE slug = ?", [row["forum"]]).fetchone()
    initiative = {"ref": f"INIT-{number}", "title": row["title"], "text": row["text"],
                  "link": row["link"], "region": row["region"], "path": row["path"],
                  "forum": forum[0] if forum else "", "when": row["happens"],
                  "language": row["language"], "publication": row["publication"] or ""}
    return render_for(site, "initiative-document.txt", language, initiative=initiative)


def issue_document(db, site, number: int, language: str) -> tuple[str, str] | None:
    found = publications.get(db, key_of(number))
    if found is None:
        return None
    payload = found["payload"]
    refs = [item["ref"] for section in payload["sections"] for item in section["items"]]
    ids = [int(ref.split("-")[1]) for ref in refs]
    full = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for initiative_id, text in db.execute(
                f"SELECT id, text FROM initiatives WHERE id IN ({marks})", chunk):
            full[f"INIT-{initiative_id}"] = " ".join(text.split())
    subject, text, _ = render_issue(site, payload, language, full=full or None, html=False)
    return subject, text


def index(db, site, language: str) -> tuple[str, str]:
    issues = [{"number": row["number"], "ref": f"WN-{row['number']}", "title": row["title"],
               "date": (row["period_end"] or "")[:10], "count": row["count"]}
              for row in db.query(
                  "SELECT number, title, period_end, key, (SELECT count(*) FROM initiatives i "
                  "WHERE i.publication = p.key) AS count FROM publications p "
                  "WHERE kind = 'whatsnew' ORDER BY number DESC LIMIT ?", [INDEX_SIZE])]
    return render_for(site, "whatsnew-index.txt", language, issues=issues)
