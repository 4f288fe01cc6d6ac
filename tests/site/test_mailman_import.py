"""`forum import-mailman` turns a GNU Mailman 3 list into a forum from the
files Mailman exports: `mailman members` listings (all, digest, nomail,
moderators), the REST roster with each member's moderation, the list's
config; the imported forum then behaves as the list did, through serve."""

from __future__ import annotations

import json
from email.utils import formataddr

from helpers import listserv, make_site, query, running_server, send_mail, wait_until

MEMBERS = "\n".join([  # `mailman members peace@lists.example.org`, as Mailman 3.3 prints it
    formataddr(("Ana Souza", "ana@example.org")),
    formataddr(("Ben Okoro", "Ben@Example.NET")),
    formataddr(("Chloé Martin", "chloe@example.fr")),  # RFC 2047 encoded by Mailman
    "dan@example.org",
    formataddr(("Eve", "eve@example.org")),
]) + "\n"
DIGEST = "Ben Okoro <ben@example.net>\n"  # `mailman members --digest any ...`
NOMAIL = "dan@example.org\n"  # `mailman members --nomail any ...`
MODERATORS = "Fatou Diop <fatou@example.sn>\n"  # `mailman members --role moderator ...`
CONFIG = {  # GET /3.1/lists/peace.lists.example.org/config (abridged)
    "display_name": "Peace Workshop", "description": "Building peace, locally",
    "preferred_language": "fr", "default_member_action": "defer",
    "default_nonmember_action": "hold", "subscription_policy": "confirm_then_moderate",
    "digests_enabled": True, "digest_frequency": "daily", "list_name": "peace",
}
ROSTER = {  # GET /3.1/lists/peace.lists.example.org/roster/member (abridged)
    "start": 0, "total_size": 3, "entries": [
        {"email": "ana@example.org", "display_name": "Ana Souza", "delivery_mode": "regular",
         "moderation_action": "accept", "role": "member"},
        {"email": "eve@example.org", "display_name": "Eve", "delivery_mode": "regular",
         "moderation_action": "hold", "role": "member"},
        {"email": "gil@example.org", "display_name": "Gil", "delivery_mode": "mime_digests",
         "moderation_action": "discard", "role": "member"},
        {"display_name": "nobody"},
    ]}


def exports(tmp_path):
    files = {"members.txt": MEMBERS, "digest.txt": DIGEST, "nomail.txt": NOMAIL,
             "moderators.txt": MODERATORS, "config.json": json.dumps(CONFIG),
             "roster.json": json.dumps(ROSTER)}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return {name: str(tmp_path / name) for name in files}


def members_of(folder) -> dict[str, tuple]:
    rows = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
    return {row["address"]: (row["name"], row["mode"]) for row in rows}


def test_a_mailman_list_becomes_a_forum_with_its_members_flags_and_settings(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    files = exports(tmp_path)
    result = listserv("forum", "import-mailman", "peace", files["members.txt"],
                      "--digest", files["digest.txt"], "--nomail", files["nomail.txt"],
                      "--moderators", files["moderators.txt"], "--config", files["config.json"],
                      "--path", "thematic", site=folder)
    assert result.stdout.strip() == ("peace: created, added 5, already members 0, digest 1, "
                                     "nomail 1, facilitators 1, standings 0, problems 0")
    assert members_of(folder) == {
        "ana@example.org": ("Ana Souza", "each"), "ben@example.net": ("Ben Okoro", "digest"),
        "chloe@example.fr": ("Chloé Martin", "each"), "dan@example.org": ("", "nomail"),
        "eve@example.org": ("Eve", "each")}
    forum = json.loads(listserv("forum", "show", "peace", "--json", site=folder).stdout)
    assert (forum["title"], forum["language"], forum["policy"], forum["digest"],
            forum["subscription"]) == ("Peace Workshop", "fr", "members", "daily", "approve")
    assert forum["facilitators"] == ["fatou@example.sn"]
    # Run again with the roster: only the new member is added, moderation becomes standing.
    again = listserv("forum", "import-mailman", "peace", files["roster.json"], "--json",
                     site=folder, check=False)
    assert again.returncode == 1  # the entry without an email is named
    report = json.loads(again.stdout)
    assert (report["created"], report["added"], report["existing"]) == (False, 1, 2)
    assert report["standings"] == {"ana@example.org": "accept", "eve@example.org": "hold",
                                   "gil@example.org": "ban"}
    assert report["problems"] == ["roster.json entry 4: no 'email'"]
    assert members_of(folder)["gil@example.org"] == ("Gil", "digest")
    standings = json.loads(listserv("sender", "list", "peace", "--json", site=folder).stdout)
    assert {(row["address"], row["standing"]) for row in standings} == {
        ("ana@example.org", "accept"), ("eve@example.org", "hold"), ("gil@example.org", "ban")}


def test_the_imported_forum_delivers_and_holds_as_the_list_did(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    files = exports(tmp_path)
    listserv("forum", "import-mailman", "peace", files["members.txt"], "--digest",
             files["digest.txt"], "--nomail", files["nomail.txt"], "--moderators",
             files["moderators.txt"], "--path", "thematic", site=folder)
    listserv("forum", "import-mailman", "peace", files["roster.json"], site=folder,
             check=False)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  "From: Ana <ana@example.org>\nSubject: Wells\nMessage-ID: <w1@example.org>"
                  "\n\nThe well is running.\n")
        send_mail(server.port, "eve@example.org", ["peace@lists.example.org"],
                  "From: Eve <eve@example.org>\nSubject: Buy now\nMessage-ID: <e1@example.org>"
                  "\n\nA fine offer.\n")
        sink.wait_for_recipient("chloe@example.fr")
        (notice,) = sink.wait_for_recipient("fatou@example.sn")  # the facilitator is told
        wait_until(lambda: query(folder, "SELECT count(*) FROM holds")[0][0] == 1, 20,
                   "eve's post held")
    assert "Buy now" in notice["Subject"]
    assert sink.messages_to("ben@example.net") == []  # a digest reader
    assert sink.messages_to("dan@example.org") == []  # nomail
    assert all("Buy now" not in m["Subject"] for m in sink.messages_to("chloe@example.fr"))
    (reason,) = query(folder, "SELECT reason FROM holds")[0]
    assert "eve@example.org" in reason


def test_a_missing_path_or_an_unreadable_export_is_one_line(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    files = exports(tmp_path)
    nopath = listserv("forum", "import-mailman", "peace", files["members.txt"], site=folder,
                      check=False)
    assert nopath.returncode == 1
    assert nopath.stderr.strip() == ("Error: forum 'peace' does not exist yet; give --path "
                                     "(thematic|socioprofessional|geocultural) to create it")
    (tmp_path / "bad.json").write_text("{not json")
    bad = listserv("forum", "import-mailman", "peace", str(tmp_path / "bad.json"), "--path",
                   "thematic", site=folder, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: bad.json: not readable JSON")
    (tmp_path / "latin1.txt").write_bytes("Chlo\xe9 <chloe@example.fr>\n".encode("latin-1"))
    latin = listserv("forum", "import-mailman", "peace", str(tmp_path / "latin1.txt"),
                     "--path", "thematic", site=folder, check=False)
    assert latin.returncode == 1 and "is not UTF-8 text" in latin.stderr
    assert "Traceback" not in nopath.stderr + bad.stderr + latin.stderr
    assert listserv("forum", "list", "--json", site=folder).stdout.strip() == "[]"
