"""Exit statuses tell a script the truth, and the commands a script runs
take --json: `status` says when no server runs, `member import` fails when
a line did not go in, `templates check` and `whatsnew publish` answer in JSON."""

from __future__ import annotations

import json

from helpers import listserv, running_server, write_site


def site_with_forum(tmp_path):
    folder = write_site(tmp_path / "site")
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=folder)
    return folder


def test_status_exits_3_and_says_so_when_no_server_runs(tmp_path):
    folder = site_with_forum(tmp_path)
    text = listserv("status", site=folder, check=False)
    assert text.returncode == 3
    assert "Server:   not running" in text.stdout
    assert text.stderr.strip() == f"listserv serve is not running for {folder}"
    data = listserv("status", "--json", site=folder, check=False)
    assert data.returncode == 3 and json.loads(data.stdout)["server"]["running"] is False
    with running_server(folder):
        running = listserv("status", site=folder, check=False)
        assert running.returncode == 0, running.stderr
        assert "Server:   running (process" in running.stdout


def test_status_of_a_folder_that_is_no_site_is_an_error_not_not_running(tmp_path):
    result = listserv("status", site=tmp_path / "nothing", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "is not a listserv site" in result.stderr


def test_member_import_fails_when_a_line_failed_and_reports_it_in_json(tmp_path):
    folder = site_with_forum(tmp_path)
    roster = tmp_path / "people.csv"
    roster.write_text("address,name\nana@example.org,Ana\nnot an address,X\n"
                      "ben@example.org,Ben\n", encoding="utf-8")
    result = listserv("member", "import", "peace", str(roster), "--json", site=folder,
                      check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["added"], report["existing"], report["problems"]) == (2, 0, 1)
    assert report["problem_lines"][0].startswith("line 3: ")
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 1 line(s) of ")
    good = tmp_path / "good.csv"
    good.write_text("address\ncarla@example.org\nana@example.org\n", encoding="utf-8")
    again = listserv("member", "import", "peace", str(good), "--json", site=folder)
    assert json.loads(again.stdout)["added"] == 1 and again.returncode == 0


def test_templates_check_in_json_lists_each_template_and_fails_on_a_broken_one(tmp_path):
    folder = site_with_forum(tmp_path)
    clean = listserv("templates", "check", "--json", site=folder)
    report = json.loads(clean.stdout)
    assert report["stray"] == [] and report["activated"] == []
    assert {(row["template"], row["language"]) for row in report["templates"]} >= {
        ("welcome.txt", "en"), ("welcome.txt", "pt")}
    assert all(row["ok"] for row in report["templates"])
    (folder / "templates" / "fr").mkdir(parents=True)
    (folder / "templates" / "fr" / "welcome.txt").write_text(
        "Subject: Bienvenue\n\n{% if %}\n", encoding="utf-8")
    broken = listserv("templates", "check", "--json", site=folder, check=False)
    assert broken.returncode == 1
    (row,) = [r for r in json.loads(broken.stdout)["templates"] if not r["ok"]]
    assert (row["template"], row["language"], row["source"]) == ("welcome.txt", "fr", "site")
    assert row["errors"][0].startswith("fr/welcome.txt:3")


def test_whatsnew_publish_in_json_says_what_was_published_and_what_is_next(tmp_path):
    folder = site_with_forum(tmp_path)
    result = listserv("whatsnew", "publish", "--json", "--at", "2026-12-02T10:00:00+00:00",
                      site=folder)
    assert json.loads(result.stdout) == {"published": [], "next": "2026-12-15T06:00:00+00:00"}
