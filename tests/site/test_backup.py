"""`listserv backup FILE` copies the live database while serve runs; the
copy is consistent, checked, private, and restores into a working site.
The database itself is created readable by its owner only."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import threading

from helpers import listserv, make_site, running_server, send_mail


def forum_site(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=folder)
    roster = tmp_path / "members.txt"
    roster.write_text("".join(f"Member {i} <m{i}@example.org>\n" for i in range(300)))
    listserv("member", "import", "peace", str(roster), site=folder)
    return folder


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_the_site_secret_are_readable_by_their_owner_only(tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    assert mode(folder / "data" / "listserv.db") == 0o600
    with running_server(folder):
        pass
    assert mode(folder / "data" / "secret") == 0o600


def test_a_backup_taken_while_serve_takes_mail_is_whole_and_restores(tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    target = tmp_path / "backups" / "site.db"
    target.parent.mkdir()
    with running_server(folder) as server:
        def post_many():
            for n in range(20):
                send_mail(server.port, "m1@example.org", ["peace@lists.example.org"],
                          f"From: m1@example.org\nSubject: Note {n}\nMessage-ID: <n{n}@x>\n\n"
                          f"Note {n}.\n")
        writer = threading.Thread(target=post_many)
        writer.start()
        result = listserv("backup", str(target), "--json", site=folder)
        writer.join()
    report = json.loads(result.stdout)
    assert report["members"] == 300 and report["forums"] == 1
    assert mode(target) == 0o600
    assert not list(target.parent.glob(".*partial"))
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        messages = copy.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert messages == report["messages"] and 0 <= messages <= 20
    # Restore as the README says: the folder without its data, then the copy in place.
    restored = tmp_path / "restored"
    shutil.copytree(folder, restored, ignore=shutil.ignore_patterns("data"))
    (restored / "data").mkdir()
    shutil.copy(target, restored / "data" / "listserv.db")
    rows = json.loads(listserv("member", "list", "peace", "--json", site=restored).stdout)
    assert len(rows) == 300


def test_a_backup_never_overwrites_by_accident_nor_copies_onto_itself(tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    target = tmp_path / "site.db"
    target.write_text("last week's backup")
    kept = listserv("backup", str(target), site=folder, check=False)
    assert kept.returncode == 1
    assert kept.stderr.strip() == (f"Error: {target} exists already; choose another name or "
                                   f"pass --force")
    assert target.read_text() == "last week's backup"
    assert "300 members" in listserv("backup", str(target), "--force", site=folder).stdout
    itself = listserv("backup", str(folder / "data" / "listserv.db"), "--force", site=folder,
                      check=False)
    assert itself.returncode == 1 and "is the live database itself" in itself.stderr
    nowhere = listserv("backup", str(tmp_path / "no" / "such" / "x.db"), site=folder,
                       check=False)
    assert nowhere.returncode == 1 and "is not a folder" in nowhere.stderr
