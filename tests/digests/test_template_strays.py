"""A file in the site's templates/ that matches no template is never used;
`templates check` and `status` name it, with the reason and a likely fix."""

from __future__ import annotations

import json

from helpers import listserv, write_site


def site_with_strays(tmp_path):
    folder = write_site(tmp_path / "site")
    templates = folder / "templates"
    (templates / "README.txt").write_text("how to override\n")  # written by init: not stray
    (templates / "fr").mkdir()
    (templates / "fr" / "welcom.txt").write_text("Subject: Bienvenue\n\nBonjour\n")
    (templates / "fr" / "welcome.txt").write_text("Subject: Bienvenue\n\nBonjour {{ forum }}\n")
    (templates / "fr" / ".welcome.txt.swp").write_text("editor state\n")  # hidden: left out
    (templates / "de").mkdir()
    (templates / "de" / "welcome.txt").write_text("Subject: Willkommen\n\nHallo\n")
    (templates / "goodbye.txt").write_text("Subject: Bye\n\nBye\n")
    (templates / "en").mkdir()
    (templates / "en" / "charter.txt").write_text("Our charter\n")
    return folder


def test_templates_check_names_each_file_that_matches_no_template(tmp_path):
    folder = site_with_strays(tmp_path)
    result = listserv("templates", "check", site=folder, check=False)
    assert result.returncode == 1
    stray = [line for line in result.stdout.splitlines() if line.startswith("STRAY")]
    assert stray == [
        "STRAY   templates/de/welcome.txt: 'de' is not one of [site] languages "
        "(en, fr, es, pt)",
        "STRAY   templates/en/charter.txt: the charter is read from charter/en.txt, "
        "not from templates/",
        "STRAY   templates/fr/welcom.txt: no template is called 'welcom.txt'; "
        "did you mean welcome.txt?",
        "STRAY   templates/goodbye.txt: is not in a language folder; put it in "
        "templates/en/ or another language's",
    ]
    assert "ok      fr/welcome.txt (site)" in result.stdout  # the good edit is used
    *_, error = result.stderr.strip().splitlines()  # after "activated fr/welcome.txt"
    assert error == "Error: 4 file(s) in templates/ match no template and are never used"
    report = json.loads(listserv("templates", "check", "--json", site=folder,
                                 check=False).stdout)
    assert [row["path"] for row in report["stray"]] == [
        "de/welcome.txt", "en/charter.txt", "fr/welcom.txt", "goodbye.txt"]


def test_status_lists_the_stray_template_files(tmp_path):
    folder = site_with_strays(tmp_path)
    text = listserv("status", site=folder, check=False).stdout
    assert "Files in templates/ that match no template (never used):" in text
    assert "  templates/fr/welcom.txt: no template is called 'welcom.txt'; did you mean " \
           "welcome.txt?" in text
    report = json.loads(listserv("status", "--json", site=folder, check=False).stdout)
    assert len(report["publications"]["stray_templates"]) == 4


def test_a_site_without_strays_passes_the_check(tmp_path):
    folder = write_site(tmp_path / "site")
    (folder / "templates" / "pt").mkdir()
    (folder / "templates" / "pt" / "goodbye.txt").write_text("Subject: Adeus\n\nAdeus\n")
    assert listserv("templates", "check", site=folder).returncode == 0
    text = listserv("status", site=folder, check=False).stdout
    assert "match no template" not in text
