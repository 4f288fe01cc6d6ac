"""`listserv templates check` checks the archive's page templates as web pages:
rendered autoescaped with sample data, errors named with file and line."""

from __future__ import annotations

from archivekit import json_of
from helpers import listserv, make_site


def web_rows(result) -> dict[str, dict]:
    return {f"{row['language']}/{row['template']}": row
            for row in json_of(result)["templates"] if row["template"].startswith("archive-")
            and row["template"].endswith(".html")}


def test_every_shipped_archive_page_renders_as_an_escaped_web_page(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    rows = web_rows(listserv("templates", "check", "--json", site=folder))
    assert {"en/archive-post.html", "en/archive-directory.html", "en/archive-search.html",
            "en/archive-bank.html", "en/archive-issue.html"} <= set(rows)
    assert [row for row in rows.values() if not row["ok"]] == []


def test_a_broken_or_unescaped_archive_page_is_reported_with_its_line(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    pages = folder / "templates" / "en"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "archive-post.html").write_text(
        '{% extends "archive-layout.html" %}\n{% block main %}\n<h1>{{ post.subject | safe }}'
        '</h1>\n{% endblock %}\n')
    (pages / "archive-month.html").write_text(
        '{% extends "archive-layout.html" %}\n{% block main %}\n<h1>{{ mnth }}</h1>\n'
        '{% endblock %}\n')
    (pages / "archive-thread.html").write_text("{% for p in posts %}\n<p>{{ p.subject }</p>\n")
    result = listserv("templates", "check", "--json", site=folder, check=False)
    assert result.returncode == 1
    rows = web_rows(result)
    assert rows["en/archive-directory.html"]["ok"]
    (post,) = rows["en/archive-post.html"]["errors"]
    assert post.startswith("en/archive-post.html: a value is printed as markup")
    (month,) = rows["en/archive-month.html"]["errors"]
    assert month.startswith("en/archive-month.html:3: UndefinedError") and "mnth" in month
    (thread,) = rows["en/archive-thread.html"]["errors"]
    assert thread.startswith("en/archive-thread.html:2: ")
