"""The relay node's command line: recipients, and commands that say where they run."""

from __future__ import annotations

import json

import click
import pytest
from helpers import listserv
from relaykit import write_relay_site

from listserv.cli.main import cli
from relays.cli import COMMANDS


@pytest.fixture
def relay(tmp_path):
    return write_relay_site(tmp_path / "relay-a")


def test_recipients_are_added_listed_and_removed(relay):
    listserv("recipient", "add", "ana@example.org", "--profile", "lowband", "--language", "fr",
             "--budget", "4000", site=relay)
    added = listserv("recipient", "add", "Moussa Traoré", "--profile", "postal",
                     "--postal-address", "BP 12; Kayes", "--country", "ml", site=relay)
    assert "Added postal recipient 2: Moussa Traoré (en)" in added.stderr
    rows = json.loads(listserv("recipient", "list", "--json", site=relay).stdout)
    assert [(r["profile"], r["address"], r["name"], r["country"], r["budget"]) for r in rows] \
        == [("lowband", "ana@example.org", "", "", 4000),
            ("postal", None, "Moussa Traoré", "ML", 0)]
    listserv("recipient", "remove", "1", site=relay)
    rows = json.loads(listserv("recipient", "list", "--json", site=relay).stdout)
    assert [r["id"] for r in rows] == [2]


@pytest.mark.parametrize("args, error", [
    (["bad-address", "--profile", "lowband"], "needs an email address"),
    (["Awa", "--profile", "postal", "--country", "SN"], "needs --postal-address"),
    (["Awa", "--profile", "postal", "--postal-address", "Dakar", "--country", "Senegal"],
     "--country CC"),
    (["ana@example.org", "--profile", "lowband", "--budget", "100"], "too small"),
    (["ana@example.org", "--profile", "lowband", "--language", "de"], "not one of this site's"),
])
def test_a_bad_recipient_gets_one_clear_line(relay, args, error):
    result = listserv("recipient", "add", *args, site=relay, check=False)
    assert result.returncode == 1 and error in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_recipients_belong_to_relays_not_to_the_hub(site):
    result = listserv("recipient", "add", "ana@example.org", "--profile", "lowband",
                      site=site.folder, check=False)
    assert result.returncode == 1 and "recipients belong to relay nodes" in result.stderr


def test_a_relay_without_its_hub_does_not_serve(tmp_path):
    folder = tmp_path / "bare"
    listserv("init", str(folder), "--domain", "relay-x.example.org", "--role", "relay")
    result = listserv("serve", "--listen", "127.0.0.1:0", site=folder, check=False)
    assert result.returncode == 1
    assert "[relay] hub must be set on a relay" in result.stderr


def test_every_relay_command_has_help():
    for group in COMMANDS:
        assert group.help, group.name
        assert cli.get_command(click.Context(cli), group.name) is group
        for command in group.commands.values():
            assert command.help, f"{group.name} {command.name}"
