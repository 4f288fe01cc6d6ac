"""The `listserv` command line: help everywhere, one-line errors, exit codes,
JSON that parses, and forums, members, holds, queue and status through it."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import listserv, running_server

from listserv.cli.common import Cli
from listserv.cli.main import cli
from listserv.delivery import queue
from listserv.intake.pipeline import process_received
from listserv.intake.smtp import store_incoming
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.init import init_site
from moderation.holds import take_holds

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
DOMAIN = "lists.example.org"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A new site (outbox delivery) with the forum 'peace' for members only."""
    init_site(tmp_path / "site", now=NOW, domain=DOMAIN)
    site = Site(tmp_path / "site")
    forums.create(site.db, "peace", title="Peace", path="thematic", now=NOW,
                  policy="members", facilitators=("fac@example.org",))
    site.db.conn.close()
    return tmp_path / "site"


def run(folder: Path, *args: str) -> click.testing.Result:
    """The real command line, in this process (faster than a subprocess)."""
    return CliRunner().invoke(cli, ["--site", str(folder), *args])


def ok(folder: Path, *args: str) -> click.testing.Result:
    result = run(folder, *args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


def one_error_line(result) -> str:
    stderr = result.stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def held_post(folder: Path, sender: str = "stranger@example.net", subject: str = "Water",
              body: str = "Clean water for all.\nSecond line.\n", tag: str = "1",
              now: datetime = NOW) -> int:
    """A post from a non-member, through the real pipeline, so it is held at `now`."""
    site = Site(folder)
    raw = (f"From: Stranger <{sender}>\nTo: peace@{DOMAIN}\nSubject: {subject}\n"
           f"Message-ID: <held-{tag}@example.net>\n\n{body}").replace("\n", "\r\n").encode()
    with site.db.atomic():
        store_incoming(site.db, raw, sender, [f"peace@{DOMAIN}"], now)
    with site.db.atomic():
        process_received(site.db, site, now)
        take_holds(site.db, site, now)
    hold_id = site.db.execute("SELECT h.id FROM holds h JOIN posts p ON p.id = h.post_id "
                              "WHERE p.header_id = ?", [f"held-{tag}@example.net"]).fetchone()[0]
    site.db.conn.close()
    return hold_id


def deliveries_to(folder: Path, address: str) -> list[dict]:
    site = Site(folder)
    rows = list(site.db.query("SELECT d.ref, d.status, b.raw FROM deliveries d "
                              "JOIN bodies b ON b.id = d.body_id WHERE d.recipient = ?",
                              [address]))
    site.db.conn.close()
    return rows


# -- the command line itself ---------------------------------------------------

def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, path + (name,))


def test_every_command_has_a_help_text():
    missing = [" ".join(path) for path, command in all_commands() if not command.help]
    assert missing == []
    assert cli.help


def test_the_commands_of_spec_section_4_exist():
    names = {" ".join(path) for path, _ in all_commands()}
    assert {"init", "serve", "forum create", "forum list", "forum show", "forum edit",
            "member add", "member remove", "member list", "member import", "held list",
            "held show", "held approve", "held reject", "held discard", "held log", "queue",
            "status"} <= names


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=" ".join)
def test_every_command_answers_help_in_a_folder_that_is_no_site(path, tmp_path):
    result = CliRunner().invoke(cli, ["--site", str(tmp_path / "nowhere"), *path, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert not (tmp_path / "nowhere").exists()


def test_help_in_a_subprocess_works_anywhere(tmp_path):
    result = subprocess.run([sys.executable, "-m", "listserv", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Usage: listserv" in result.stdout
    for group in ("forum", "member", "held", "queue", "status", "serve", "init"):
        assert group in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_command_outside_a_site_says_how_to_make_one(tmp_path):
    result = listserv("forum", "list", site=tmp_path / "nowhere", check=False)
    assert result.returncode == 1
    assert "listserv init" in one_error_line(result)


def test_the_site_comes_from_listserv_site_when_not_given(folder):
    result = subprocess.run([sys.executable, "-m", "listserv", "forum", "list", "--json"],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, LISTSERV_SITE=str(folder)))
    assert [row["slug"] for row in json.loads(result.stdout)] == ["peace"]


@pytest.mark.parametrize("args", [
    ("forum", "create", "x", "--title", "X", "--path", "nowhere"),
    ("forum", "create", "x", "--title", "X"),
    ("member", "add", "peace"),
    ("member", "add", "peace", "a@example.org", "--mode", "sometimes"),
    ("held", "approve", "seven"),
    ("forum", "list", "--colour"),
    ("serve", "--listen", "no port here"),
    ("nonsense",),
])
def test_usage_errors_exit_2(folder, args):
    result = run(folder, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_an_unexpected_failure_is_one_line_without_a_traceback(folder):
    (folder / "data" / "listserv.db").unlink()
    for path in (folder / "data").iterdir():
        path.unlink()
    (folder / "data").rmdir()
    (folder / "data").write_text("a file where the data folder belongs")
    result = listserv("forum", "list", site=folder, check=False)
    assert result.returncode == 1
    assert "data" in one_error_line(result)


def test_the_root_group_turns_any_exception_into_one_line():
    @click.group(cls=Cli)
    def group():
        """A group."""

    @group.command()
    def explode():
        """Fail like a bug would."""
        raise KeyError("no such key\nsecond line")

    result = CliRunner().invoke(group, ["explode"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "unexpected KeyError" in line and "second line" in line


def test_traceback_shows_the_details_when_asked(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "listserv.toml").write_text("")
    (tmp_path / "site" / "data").write_text("not a folder")
    result = listserv("--traceback", "forum", "list", site=tmp_path / "site", check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


# -- forums ----------------------------------------------------------------------

def test_forum_create_list_show_and_edit(folder):
    ok(folder, "forum", "create", "farmers-network", "--title", "Farmers' network",
       "--path", "socioprofessional", "--language", "fr", "--policy", "moderated",
       "--facilitator", "Moussa@Example.org", "--no-charter", "--digest", "daily")
    rows = json.loads(ok(folder, "forum", "list", "--json").stdout)
    assert [row["slug"] for row in rows] == ["farmers-network", "peace"]
    shown = json.loads(ok(folder, "forum", "show", "farmers-network", "--json").stdout)
    assert shown["facilitators"] == ["moussa@example.org"]
    assert (shown["path"], shown["language"], shown["policy"], shown["charter"],
            shown["digest"]) == ("socioprofessional", "fr", "moderated", False, "daily")
    ok(folder, "forum", "edit", "farmers-network", "--title", "Farmers", "--charter",
       "--subscription", "approve", "--add-facilitator", "ana@example.org",
       "--remove-facilitator", "moussa@example.org")
    edited = json.loads(ok(folder, "forum", "show", "farmers-network", "--json").stdout)
    assert (edited["title"], edited["charter"], edited["subscription"]) == \
        ("Farmers", True, "approve")
    assert edited["facilitators"] == ["ana@example.org"]
    assert edited["policy"] == "moderated"  # untouched options stay as they were


def test_forum_list_prints_columns_and_show_prints_fields(folder):
    listing = ok(folder, "forum", "list").stdout.splitlines()
    assert listing[0].split() == ["FORUM", "PATH", "LANG", "POLICY", "MEMBERS", "HELD", "TITLE"]
    assert listing[1].split()[:2] == ["peace", "thematic"]
    shown = ok(folder, "forum", "show", "peace").stdout
    assert f"Address:      peace@{DOMAIN}" in shown
    assert "Facilitators: fac@example.org" in shown


@pytest.mark.parametrize("args, words", [
    (("forum", "create", "peace", "--title", "P", "--path", "thematic"), "already exists"),
    (("forum", "create", "postmaster", "--title", "P", "--path", "thematic"), "reserved"),
    (("forum", "create", "Bad Name", "--title", "P", "--path", "thematic"), "not a forum name"),
    (("forum", "create", "x", "--title", "P", "--path", "thematic", "--language", "de"),
     "not one of the site's languages"),
    (("forum", "create", "x", "--title", "P", "--path", "thematic", "--facilitator", "nobody"),
     "not an address"),
    (("forum", "show", "nope"), "forum 'nope' does not exist"),
    (("forum", "edit", "nope", "--title", "T"), "forum 'nope' does not exist"),
])
def test_forum_mistakes_are_one_line_and_exit_1(folder, args, words):
    result = run(folder, *args)
    assert result.exit_code == 1
    assert words in one_error_line(result)


def test_forum_edit_without_options_is_a_usage_error(folder):
    assert run(folder, "forum", "edit", "peace").exit_code == 2


# -- members ---------------------------------------------------------------------

def test_member_add_preconfirmed_list_and_remove(folder):
    ok(folder, "member", "add", "peace", "Ana@Example.org", "--name", "Ana", "--language",
       "pt", "--mode", "digest", "--profile", "lowband", "--region", "Brazil",
       "--preconfirmed")
    (row,) = json.loads(ok(folder, "member", "list", "peace", "--json").stdout)
    assert (row["address"], row["name"], row["language"], row["mode"], row["profile"],
            row["region"]) == ("ana@example.org", "Ana", "pt", "digest", "lowband", "Brazil")
    again = run(folder, "member", "add", "peace", "ana@example.org", "--preconfirmed")
    assert again.exit_code == 1 and "already a member" in one_error_line(again)
    ok(folder, "member", "remove", "peace", "ana@example.org")
    assert json.loads(ok(folder, "member", "list", "peace", "--json").stdout) == []
    gone = run(folder, "member", "remove", "peace", "ana@example.org")
    assert gone.exit_code == 1 and "not a member" in one_error_line(gone)


def test_member_add_without_preconfirmed_sends_a_confirmation_request(folder):
    result = ok(folder, "member", "add", "peace", "ben@example.org", "--language", "fr")
    assert "confirmation request" in result.stderr
    (sent,) = deliveries_to(folder, "ben@example.org")
    assert sent["status"] == "queued"
    assert b"peace-confirm+" in sent["raw"]
    assert json.loads(ok(folder, "member", "list", "peace", "--json").stdout) == []


def test_member_add_of_a_member_without_preconfirmed_sends_nothing(folder):
    ok(folder, "member", "add", "peace", "ana@example.org", "--preconfirmed")
    result = run(folder, "member", "add", "peace", "ana@example.org")
    assert result.exit_code == 1 and "already a member" in one_error_line(result)
    assert deliveries_to(folder, "ana@example.org") == []


def test_member_list_prints_columns_in_address_order(folder):
    for address in ("zoe@example.org", "ana@example.org"):
        ok(folder, "member", "add", "peace", address, "--preconfirmed")
    lines = ok(folder, "member", "list", "peace").stdout.splitlines()
    assert lines[0].split()[:3] == ["ADDRESS", "MODE", "PROFILE"]
    assert [line.split()[0] for line in lines[1:]] == ["ana@example.org", "zoe@example.org"]


def test_member_list_of_an_unknown_forum_is_an_error(folder):
    result = run(folder, "member", "list", "nope", "--json")
    assert result.exit_code == 1 and result.stdout == ""


CSV = ("address,name,language,mode,profile,region\n"
       "ana@example.org,Ana,pt,digest,lowband,Brazil\n"
       "not an address,Bad,en,each,email,\n"
       "ben@example.org,Ben,xx,each,email,\n"
       "carla@example.org,\"Carla, Jr\",es,,,\n"
       "ana@example.org,Ana again,,,,\n"
       "dan@example.org,Dan,en,sometimes,email,\n")


def test_member_import_adds_good_lines_and_reports_bad_ones_by_number(folder, tmp_path):
    (tmp_path / "people.csv").write_text(CSV, encoding="utf-8")
    result = listserv("member", "import", "peace", str(tmp_path / "people.csv"), site=folder,
                      check=False)
    assert result.returncode == 1  # some lines were not imported: a script must see it
    assert result.stdout.strip() == "peace: added 2, already members 1, problems 3"
    problems = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in problems] == ["line 3", "line 4", "line 7"]
    assert "Traceback" not in result.stderr
    rows = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
    assert [(r["address"], r["name"], r["language"], r["mode"]) for r in rows] == [
        ("ana@example.org", "Ana", "pt", "digest"), ("carla@example.org", "Carla, Jr", "es",
                                                     "each")]


def test_member_import_twice_adds_nobody_the_second_time(folder, tmp_path):
    (tmp_path / "people.csv").write_text("address\na@example.org\nb@example.org\n")
    assert ok(folder, "member", "import", "peace", str(tmp_path / "people.csv")).stdout \
        .strip() == "peace: added 2, already members 0, problems 0"
    assert ok(folder, "member", "import", "peace", str(tmp_path / "people.csv")).stdout \
        .strip() == "peace: added 0, already members 2, problems 0"


def test_member_import_of_many_rows_goes_in_chunks_and_adds_them_all(folder, tmp_path):
    rows = "".join(f"user{i}@d{i % 97}.example.org,User {i}\n" for i in range(12_345))
    (tmp_path / "many.csv").write_text("address,name\n" + rows)
    result = ok(folder, "member", "import", "peace", str(tmp_path / "many.csv"))
    assert result.stdout.strip() == "peace: added 12345, already members 0, problems 0"
    site = Site(folder)
    forum = forums.get(site.db, "peace")
    assert members.count(site.db, forum["id"]) == 12_345
    assert site.db.execute("SELECT count(*) FROM events WHERE kind = 'subscribed' AND "
                           "forum_id = ?", [forum["id"]]).fetchone()[0] == 12_345


def test_member_import_with_invite_sends_requests_instead_of_adding(folder, tmp_path):
    ok(folder, "member", "add", "peace", "ana@example.org", "--preconfirmed")
    (tmp_path / "people.csv").write_text("address,language\nana@example.org,\n"
                                         "ben@example.org,fr\nbad,\n")
    result = run(folder, "member", "import", "peace", str(tmp_path / "people.csv"), "--invite")
    assert result.exit_code == 1
    assert result.stdout.strip() == "peace: invited 1, already members 1, problems 1"
    assert "line 4:" in result.stderr
    assert len(deliveries_to(folder, "ben@example.org")) == 1
    assert deliveries_to(folder, "ana@example.org") == []
    addresses = [r["address"] for r in json.loads(ok(folder, "member", "list", "peace",
                                                     "--json").stdout)]
    assert addresses == ["ana@example.org"]


@pytest.mark.parametrize("content, words", [
    (b"name\nAna\n", "needs a header row with an 'address' column"),
    (b"address,colour\na@example.org,red\n", "column 'colour' is not known"),
    (b"", "needs a header row"),
    (b"address\n\xff\xfeb@example.org\n", "is not UTF-8"),
])
def test_member_import_of_an_unusable_file_is_one_line(folder, tmp_path, content, words):
    (tmp_path / "bad.csv").write_bytes(content)
    result = run(folder, "member", "import", "peace", str(tmp_path / "bad.csv"))
    assert result.exit_code == 1
    assert words in one_error_line(result)


def test_member_import_of_a_missing_file_is_a_usage_error(folder, tmp_path):
    assert run(folder, "member", "import", "peace", str(tmp_path / "none.csv")).exit_code == 2


# -- holds -------------------------------------------------------------------------

def test_held_list_and_show_a_post_from_a_non_member(folder):
    hold_id = held_post(folder, subject="Wells in Kayes")
    (row,) = json.loads(listserv("held", "list", "--json", site=folder).stdout)
    assert (row["id"], row["slug"], row["sender"], row["subject"]) == \
        (hold_id, "peace", "stranger@example.net", "Wells in Kayes")
    assert "not a member" in row["reason"]
    assert json.loads(listserv("held", "list", "peace", "--json", site=folder).stdout)
    shown = listserv("held", "show", str(hold_id), site=folder).stdout
    assert "Subject: Wells in Kayes" in shown
    assert "From: Stranger <stranger@example.net>" in shown
    assert "Clean water for all." in shown and "not a member" in shown


def test_held_show_of_a_message_that_cannot_be_parsed_still_shows_its_start(folder):
    hold_id = held_post(folder)
    site = Site(folder)
    message_id = holds_message_id(site, hold_id)
    with site.db.atomic():
        site.db.execute("UPDATE messages SET raw = ? WHERE id = ?",
                        [b"Subject: odd\x00\n\nbody", message_id])
    result = ok(folder, "held", "show", str(hold_id))
    assert "cannot be read safely" in result.stdout
    assert "Subject: odd" in result.stdout


def holds_message_id(site: Site, hold_id: int) -> int:
    return site.db.execute("SELECT p.message_id FROM holds h JOIN posts p ON p.id = h.post_id "
                           "WHERE h.id = ?", [hold_id]).fetchone()[0]


def test_held_approve_releases_the_post_once(folder):
    hold_id = held_post(folder)
    result = listserv("held", "approve", str(hold_id), site=folder)
    assert f"Approved hold {hold_id}" in result.stderr
    site = Site(folder)
    hold = site.db.execute("SELECT h.status, h.decided_by, h.decided_via, p.status FROM holds h "
                           "JOIN posts p ON p.id = h.post_id WHERE h.id = ?",
                           [hold_id]).fetchone()
    assert tuple(hold) == ("approved", getpass.getuser(), "cli", "approved")
    again = listserv("held", "approve", str(hold_id), site=folder)
    assert "already approved" in again.stderr
    late = listserv("held", "reject", str(hold_id), site=folder, check=False)
    assert late.returncode == 1
    assert "already approved" in one_error_line(late)


def test_held_reject_queues_a_notice_with_the_reason_to_the_poster(folder):
    hold_id = held_post(folder)
    listserv("held", "reject", str(hold_id), "--reason", "Off topic for this forum",
             site=folder)
    (notice,) = deliveries_to(folder, "stranger@example.net")
    assert notice["status"] == "queued"
    assert b"Off topic for this forum" in notice["raw"]
    log = json.loads(listserv("held", "log", "--json", site=folder).stdout)
    assert [(row["id"], row["status"], row["decision_reason"]) for row in log] == \
        [(hold_id, "rejected", "Off topic for this forum")]


def test_held_discard_tells_nobody(folder):
    hold_id = held_post(folder)
    listserv("held", "discard", str(hold_id), site=folder)
    assert deliveries_to(folder, "stranger@example.net") == []
    assert json.loads(listserv("held", "list", "--json", site=folder).stdout) == []
    (row,) = json.loads(listserv("held", "log", "peace", "--json", site=folder).stdout)
    assert row["status"] == "discarded"


def test_held_commands_on_an_unknown_hold_are_one_line(folder):
    for action in ("show", "approve", "reject", "discard"):
        result = run(folder, "held", action, "999")
        assert result.exit_code == 1
        assert "hold 999 does not exist" in one_error_line(result)


# -- queue and status ---------------------------------------------------------------

def queue_mail(folder: Path, ref: str, recipients: list[str]) -> None:
    site = Site(folder)
    with site.db.atomic():
        queue.queue_message(site.db, ref, b"Subject: hi\r\n\r\nhello\r\n", recipients,
                            f"peace-bounces@{DOMAIN}", NOW)
    site.db.conn.close()


def test_queue_shows_counts_and_deferred_deliveries_with_their_error(folder):
    queue_mail(folder, "t:1", ["a@example.org", "b@example.net"])
    site = Site(folder)
    with site.db.atomic():
        site.db.execute("UPDATE deliveries SET status = 'deferred', attempts = 2, "
                        "last_error = '451 try later' WHERE recipient = 'b@example.net'")
    report = json.loads(listserv("queue", "--json", site=folder).stdout)
    assert report["counts"]["queued"] == 1 and report["counts"]["deferred"] == 1
    text = listserv("queue", site=folder).stdout
    assert "deferred 1" in text and "451 try later" in text and "b@example.net" in text


def test_queue_counts_a_batch_row_in_recipients_and_names_how_many_more(folder):
    for address in ("ana@example.org", "ben@example.org", "cleo@example.org"):
        ok(folder, "member", "add", "peace", address, "--preconfirmed")
    site = Site(folder)
    with site.db.atomic():
        body_id = queue.store_body(site.db, "post:1", b"Subject: x\r\n\r\nx\r\n", NOW)
        forum_id = site.db.execute("SELECT id FROM forums WHERE slug = 'peace'").fetchone()[0]
        assert queue.enqueue_members(site.db, "post:1", body_id, f"peace-bounces@{DOMAIN}", NOW,
                               forum_id=forum_id, mode="each", profile="email", batch=100) == 3
        site.db.execute("UPDATE deliveries SET status = 'deferred', attempts = 1, "
                        "last_error = '451 try later' WHERE ref = 'post:1'")
    report = json.loads(listserv("queue", "--json", site=folder).stdout)
    assert report["counts"]["deferred"] == 3
    assert [(d["recipient"], d["size"]) for d in report["deferred"]] == [("ana@example.org", 3)]
    text = listserv("queue", site=folder).stdout
    assert "deferred 3" in text and "ana@example.org +2 more" in text


def test_status_shows_forums_holds_queue_and_set_aside_messages(folder):
    ok(folder, "member", "add", "peace", "ana@example.org", "--preconfirmed")
    held_post(folder)
    queue_mail(folder, "t:2", ["a@example.org"])
    site = Site(folder)
    with site.db.atomic():
        store_incoming(site.db, b"Subject: broken\r\n\r\nx", "x@example.org",
                       [f"peace@{DOMAIN}"], NOW)
        site.db.execute("UPDATE messages SET status = 'failed', error = "
                        "'KeyError: set aside after 3 tries' WHERE subject = '' AND "
                        "status = 'received'")
    report = json.loads(listserv("status", "--json", site=folder, check=False).stdout)
    assert report["site"]["domain"] == DOMAIN and report["site"]["role"] == "hub"
    assert report["server"] == {"running": False, "pid": None}
    assert [(f["slug"], f["members"], f["held"]) for f in report["forums"]] == [("peace", 1, 1)]
    assert report["holds"]["held"] == 1
    (failed,) = report["messages"]["failed"]
    assert failed["error"] == "KeyError: set aside after 3 tries"
    assert report["queue"]["counts"]["queued"] >= 1
    text = listserv("status", site=folder, check=False).stdout
    assert "set aside after 3 tries" in text
    assert "Held posts: 1 waiting" in text and "not running" in text


def test_status_tells_when_a_server_holds_the_site(folder):
    site = Site(folder)
    site.lock()
    try:
        report = json.loads(listserv("status", "--json", site=folder).stdout)
    finally:
        site.unlock()
    assert report["server"] == {"running": True, "pid": str(os.getpid())}
    stopped = listserv("status", "--json", site=folder, check=False)
    assert json.loads(stopped.stdout)["server"]["running"] is False
    assert stopped.returncode == 3
    assert stopped.stderr.strip() == f"listserv serve is not running for {folder}"


def test_member_list_into_a_closed_pipe_ends_quietly(folder):
    with Site(folder).db.atomic():
        pass
    (folder / "many.csv").write_text("address\n" + "".join(
        f"u{i}@example.org\n" for i in range(3000)))
    ok(folder, "member", "import", "peace", str(folder / "many.csv"))
    command = f"{sys.executable} -m listserv --site {folder} member list peace | head -n 1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("ADDRESS")
    assert "Traceback" not in result.stderr


def test_a_post_approved_on_the_command_line_is_distributed_by_the_running_server(folder):
    ok(folder, "member", "add", "peace", "ana@example.org", "--preconfirmed")
    # Held by the clock the running server and the command line go by, so the
    # server's expiry never finds it older than it is.
    hold_id = held_post(folder, now=datetime.now(timezone.utc))
    with running_server(folder):
        report = json.loads(listserv("status", "--json", site=folder).stdout)
        assert report["server"]["running"] is True
        listserv("held", "approve", str(hold_id), site=folder)
        site = Site(folder)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not deliveries_to(folder, "ana@example.org"):
            time.sleep(0.05)
        status = site.db.execute("SELECT p.status FROM holds h JOIN posts p ON "
                                 "p.id = h.post_id WHERE h.id = ?", [hold_id]).fetchone()[0]
    (copy,) = deliveries_to(folder, "ana@example.org")
    assert b"Subject: [peace] Water" in copy["raw"]
    assert status == "distributed"
