"""`listserv init`: a new site folder that works at once, and never over an old one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone

from helpers import listserv

from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.init import DEMO_FORUMS, add_demo, init_site, render_config
from listserv.site.resources import shipped_dir
from listserv.site.settings import load_settings

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def test_init_makes_the_site_folder_with_settings_templates_charter_and_data(tmp_path):
    folder = tmp_path / "site"
    result = listserv("init", str(folder), "--domain", "forums.example.net")
    assert result.stdout == ""
    assert "Created the hub site forums.example.net" in result.stderr
    settings = load_settings(folder / "listserv.toml")
    assert settings.domain == "forums.example.net"
    assert settings.site.role == "hub"
    assert "templates/xx/NAME" in (folder / "templates" / "README.txt").read_text()
    assert (folder / "charter").is_dir()
    assert (folder / "data" / "listserv.db").is_file()
    assert "data/" in (folder / ".gitignore").read_text().splitlines()


def test_the_written_settings_keep_the_shipped_comments(tmp_path):
    init_site(tmp_path / "site", now=NOW, domain="forums.example.net")
    text = (tmp_path / "site" / "listserv.toml").read_text()
    assert text == render_config("forums.example.net", selector=f"ls{NOW:%Y%m}")
    assert text.count("\n#") > 30
    assert 'domain = "forums.example.net"' in text


def test_the_domain_is_filled_in_only_under_site(tmp_path):
    text = render_config("forums.example.net", "relay")
    assert text.count('"forums.example.net"') == 1
    assert 'role = "relay"' in text


def test_init_with_role_relay_makes_a_relay_node(tmp_path):
    listserv("init", str(tmp_path / "node"), "--role", "relay", "--domain", "dakar.example.org")
    settings = load_settings(tmp_path / "node" / "listserv.toml")
    assert (settings.site.role, settings.domain) == ("relay", "dakar.example.org")


def test_init_without_a_folder_uses_the_site_option(tmp_path):
    subprocess.run([sys.executable, "-m", "listserv", "init"], cwd=tmp_path, check=True,
                   capture_output=True, env=dict(os.environ, LISTSERV_SITE="from-env"))
    assert (tmp_path / "from-env" / "listserv.toml").is_file()


def test_init_refuses_an_existing_site_and_changes_nothing(tmp_path):
    folder = tmp_path / "site"
    listserv("init", str(folder), "--domain", "one.example.org")
    before = (folder / "listserv.toml").read_text()
    result = listserv("init", str(folder), "--domain", "two.example.org", check=False)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and "already a listserv site" in line
    assert (folder / "listserv.toml").read_text() == before


def test_init_refuses_a_folder_that_has_data_but_no_settings(tmp_path):
    (tmp_path / "site" / "data").mkdir(parents=True)
    result = listserv("init", str(tmp_path / "site"), check=False)
    assert result.returncode == 1
    assert not (tmp_path / "site" / "listserv.toml").exists()


def test_init_with_a_bad_domain_says_so_and_writes_nothing(tmp_path):
    result = listserv("init", str(tmp_path / "site"), "--domain", "not a domain", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: --domain 'not a domain' is not a mail domain")
    assert not (tmp_path / "site").exists()


def test_init_with_an_unknown_role_is_a_usage_error(tmp_path):
    result = listserv("init", str(tmp_path / "site"), "--role", "spoke", check=False)
    assert result.returncode == 2


def test_init_in_a_folder_with_other_files_adds_to_its_gitignore(tmp_path):
    (tmp_path / "README").write_text("our site\n")
    (tmp_path / ".gitignore").write_text("*.pyc")
    init_site(tmp_path, now=NOW)
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "*.pyc"
    assert "data/" in (tmp_path / ".gitignore").read_text().splitlines()
    assert (tmp_path / "README").read_text() == "our site\n"


def test_the_charter_folder_holds_the_shipped_charter_of_each_site_language(tmp_path):
    created = init_site(tmp_path / "site", now=NOW)
    shipped = shipped_dir("templates")
    expected = [lang for lang in created.settings.site.languages
                if (shipped / lang / "charter.txt").is_file()]
    assert created.charters == expected
    for lang in expected:
        copy = tmp_path / "site" / "charter" / f"{lang}.txt"
        assert copy.read_bytes() == (shipped / lang / "charter.txt").read_bytes()
    assert sorted(p.stem for p in (tmp_path / "site" / "charter").iterdir()) == sorted(expected)


def test_the_site_secret_is_readable_by_its_owner_only(tmp_path):
    init_site(tmp_path / "site", now=NOW)
    mode = (tmp_path / "site" / "data" / "secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_demo_adds_a_forum_on_each_path_with_a_facilitator_and_members(tmp_path):
    folder = tmp_path / "site"
    listserv("init", str(folder), "--demo")
    rows = json.loads(listserv("forum", "list", "--json", site=folder).stdout)
    assert sorted(row["path"] for row in rows) == ["geocultural", "socioprofessional",
                                                   "thematic"]
    for row in rows:
        assert row["facilitators"], row["slug"]
        assert row["members"] >= 3, row["slug"]


def test_demo_members_are_confirmed_and_mixed_in_language_mode_and_profile(tmp_path):
    init_site(tmp_path / "site", now=NOW, demo=True)
    site = Site(tmp_path / "site")
    everyone = [m for slug, *_ in DEMO_FORUMS for m in members.iter_members(site.db, slug)]
    assert {m["language"] for m in everyone} == {"en", "fr", "es", "pt"}
    assert {m["mode"] for m in everyone} == {"each", "digest", "nomail"}
    assert {m["profile"] for m in everyone} == {"email", "lowband"}
    assert all(m["charter_accepted_at"] for m in everyone)
    for slug, *_ in DEMO_FORUMS:
        forum = forums.get(site.db, slug)
        assert members.find(site.db, forum["id"], forum["facilitators"][0])


def test_demo_keeps_to_the_site_languages(tmp_path):
    folder = tmp_path / "site"
    init_site(folder, now=NOW)
    text = (folder / "listserv.toml").read_text().replace(
        'languages = ["en", "fr", "es", "pt"]', 'languages = ["en", "fr"]')
    (folder / "listserv.toml").write_text(text)
    site = Site(folder)
    add_demo(site, NOW)
    used = {m["language"] for slug, *_ in DEMO_FORUMS for m in members.iter_members(site.db, slug)}
    assert used == {"en", "fr"}
