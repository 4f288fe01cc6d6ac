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


def test_a_sites_own_archive_page_is_activated_and_used_not_called_stray(tmp_path, sink):
    from archivekit import archived, forum, get, mail, post_ids, web_site
    from helpers import running_server, send_mail

    from listserv.site.resources import shipped_dir

    folder, web = web_site(tmp_path, sink)
    forum(folder)
    pages = folder / "templates" / "en"
    pages.mkdir(parents=True, exist_ok=True)
    shipped = (shipped_dir("templates") / "en" / "archive-post.html").read_text()
    (pages / "archive-post.html").write_text(shipped.replace(
        "{% endblock %}", '<p class="meta">Kept by the Sahel centre</p>\n{% endblock %}'))
    result = listserv("templates", "check", "--json", site=folder)
    report = json_of(result)
    assert report["stray"] == []
    assert [row["template"] for row in report["activated"]] == ["en/archive-post.html"]
    assert web_rows(result)["en/archive-post.html"]["source"] == "site"
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("Seeds for the dry season", "We keep millet seed in clay jars."))
        archived(folder, 1)
        (post_id,) = post_ids(folder)
        status, _, body = get(web, f"/archive/peace/{post_id}.html")
    assert status == 200 and "Kept by the Sahel centre" in body.decode()
    assert "Seeds for the dry season" in body.decode()
