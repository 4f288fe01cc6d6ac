"""`listserv mta postfix`: the maps list exactly what the intake accepts at
RCPT, follow `forum create`, and a bad --output is one clear error line."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from listserv.cli.main import cli
from listserv.cli.mta import site_addresses
from listserv.intake.smtp import Intake
from listserv.site import forums
from listserv.site.folder import Site
from listserv.site.init import init_site

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
DOMAIN = "lists.example.org"


def make_site(tmp_path: Path) -> Path:
    init_site(tmp_path / "site", now=NOW, domain=DOMAIN)
    site = Site(tmp_path / "site")
    for slug in ("peace", "water"):
        forums.create(site.db, slug, title=slug.title(), path="thematic", now=NOW)
    site.db.conn.close()
    return tmp_path / "site"


def run(folder: Path, *args: str):
    return CliRunner().invoke(cli, ["--site", str(folder), *args])


def table(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()
            if line and not line.startswith("#")]


def test_maps_for_two_forums_match_what_intake_accepts(tmp_path):
    folder = make_site(tmp_path)
    result = run(folder, "mta", "postfix")
    assert result.exit_code == 0, result.output
    out = folder / "data" / "postfix"
    transport = (out / "transport").read_text().splitlines()
    assert f"{DOMAIN} lmtp:inet:127.0.0.1:8025" in transport or \
        f"{DOMAIN} smtp:[127.0.0.1]:8025" in transport
    addresses = table(out / "relay_recipients")
    for slug in ("peace", "water"):
        for suffix in ("", "-request", "-join", "-leave", "-owner", "-bounces", "-confirm"):
            assert f"{slug}{suffix}@{DOMAIN}" in addresses
    assert f"postmaster@{DOMAIN}" in addresses and f"whatsnew@{DOMAIN}" in addresses
    assert len(addresses) == len(set(addresses))
    assert f"postmap {out.resolve() / 'relay_recipients'}" in result.output
    assert "recipient_delimiter = +" in result.output
    assert f"relay_recipient_maps = hash:{out.resolve() / 'relay_recipients'}" in result.output
    site = Site(folder)
    intake = Intake(site, site_addresses=site_addresses(site))
    tokened = ("-confirm@", "-leave@", "-bounces@")  # need a token; Postfix passes +TOKEN
    plain = [address for address in addresses if not any(t in address for t in tokened)]
    refused = [address for address in plain if not intake.accepts(address, "a@b.example")[0]]
    assert refused == []
    assert not intake.accepts(f"nosuch@{DOMAIN}", "a@b.example")[0]
    assert f"nosuch@{DOMAIN}" not in addresses


def test_forum_create_rewrites_the_maps(tmp_path):
    folder = make_site(tmp_path)
    assert run(folder, "mta", "postfix").exit_code == 0
    result = run(folder, "forum", "create", "seeds", "--title", "Seeds",
                 "--path", "thematic")
    assert result.exit_code == 0, result.output
    addresses = table(folder / "data" / "postfix" / "relay_recipients")
    assert f"seeds-join@{DOMAIN}" in addresses and f"seeds@{DOMAIN}" in addresses


def test_bad_output_is_one_clear_line(tmp_path):
    folder = make_site(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run(folder, "mta", "postfix", "--output", str(blocker))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write the Postfix maps" in lines[0], result.output


def test_serve_rewrites_maps_that_miss_a_forum_at_start(tmp_path):
    from helpers import running_server, wait_until

    folder = make_site(tmp_path)
    assert run(folder, "mta", "postfix").exit_code == 0
    recipients = folder / "data" / "postfix" / "relay_recipients"
    site = Site(folder)  # a forum made while serve was down, by no command that rewrites
    forums.create(site.db, "seeds", title="Seeds", path="thematic", now=NOW)
    site.db.conn.close()
    assert f"seeds@{DOMAIN}" not in table(recipients)
    with running_server(folder):
        wait_until(lambda: f"seeds-join@{DOMAIN}" in table(recipients), timeout=20,
                   what="serve rewriting the Postfix maps at start")
    assert f"peace@{DOMAIN}" in table(recipients)


def test_readme_shows_the_main_cf_lines_that_mta_postfix_prints():
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Behind Postfix", 1)[1].split("\n## ", 1)[0]
    from listserv.site import mta

    lines = mta.main_cf_lines(DOMAIN, Path("/srv/listserv/site/data/postfix"))
    missing = [line for line in lines if line not in section.splitlines()]
    assert not missing, missing
