"""The outbox Maildir, through `listserv serve`: there before the first copy, torn files set aside.

The README's first look is run as written (its commands, from a fresh
`init --demo`; only the port is the test's own): every copy of the first
post reaches `data/outbox/new/` on its first try, none deferred. A file a
cut-short write left in `data/outbox/tmp/` is named in the log at start and
moved out of the Maildir, and the copy it was is written again whole.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from helpers import listserv, query, running_server, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def first_look() -> tuple[str, list[str], str, str]:
    """The README's first command's `init`, and its first look: the command lines
    before the post, the Python that posts, and the `ls` that shows the copies."""
    first = readme_blocks()[0]
    init = re.search(r"listserv (init site --demo)", first).group(1)
    look = next(block for block in readme_blocks() if "smtplib" in block)
    commands = [line.split("#")[0].strip() for line in look.splitlines()
                if line.startswith(".venv/bin/listserv")]
    script = re.search(r"python3 - <<'EOF'.*?\n(.*?)\nEOF", look, re.S).group(1)
    ls = next(line.split("#")[0].strip() for line in look.splitlines() if line.startswith("ls "))
    return init, commands, script + "\n", ls


def test_the_readmes_first_look_on_a_fresh_demo_site_defers_no_copy(tmp_path):
    init, commands, script, ls = first_look()
    assert init == "init site --demo"
    subprocess.run([sys.executable, "-m", "listserv", *init.split()], cwd=tmp_path, check=True,
                   capture_output=True)
    site = tmp_path / "site"
    with running_server(site) as server:
        # Made before the first copy: two copies written at once (the demo's email
        # and lowband members) once raced to create it, and one was deferred.
        outbox = site / "data" / "outbox"
        assert all((outbox / name).is_dir() for name in ("tmp", "new", "cur"))
        # the port is open a moment before serve prints where it listens
        wait_until(lambda: "listserv: serving" in server.output(), 20, "serve's first line")
        listen = re.search(r"127\.0\.0\.1:(\d+)", server.output())
        assert listen and int(listen.group(1)) == server.port
        for command in commands:  # status, forum list: as the README writes them
            args = command.split()[1:]
            result = subprocess.run([sys.executable, "-m", "listserv", *args], cwd=tmp_path,
                                    capture_output=True, text=True)
            assert result.returncode == 0, (command, result.stderr)
            assert "Traceback" not in result.stderr
        post = script.replace('"127.0.0.1", 8025', f'"127.0.0.1", {server.port}')
        assert post != script, "the README's post no longer goes to 127.0.0.1:8025"
        subprocess.run([sys.executable, "-"], input=post, text=True, cwd=tmp_path, check=True)
        def handed_over() -> bool:  # one query: rows queued between two would slip through
            ((rows, waiting),) = query(site, "SELECT count(*), total(status IN ('queued', "
                                             "'sending')) FROM deliveries WHERE ref LIKE 'post:%'")
            return rows > 0 and waiting == 0

        wait_until(handed_over, 20, "the post's copies to be handed over")
        output = server.output()
    folder = tmp_path / ls.split()[1]
    copies = [path.read_bytes() for path in folder.iterdir()]
    rows = query(site, "SELECT status, attempts, last_error FROM deliveries "
                       "WHERE ref LIKE 'post:%'")
    assert any(b"Subject: [water-commons] Wells" in copy for copy in copies), \
        (len(copies), rows, output[-3000:])
    assert rows and {row[:2] for row in rows} == {("sent", 1)}, rows  # first try, no retry
    queue = json.loads(listserv("queue", "--json", site=site).stdout)
    assert queue["counts"]["deferred"] == 0 and queue["counts"]["failed"] == 0, queue
    assert "cannot write the outbox" not in output, output


def test_a_torn_file_in_the_outbox_tmp_is_named_at_start_and_set_aside(tmp_path):
    site = tmp_path / "site"
    listserv("init", str(site), "--domain", "lists.example.org", "--demo")
    tmp = site / "data" / "outbox" / "tmp"
    tmp.mkdir(parents=True)
    torn = tmp / "1764660000.M1P4242Q1.host"
    torn.write_bytes(b"Return-Path: <water-commons-bounces@lists.example.org>\n"
                     b"X-Listserv-Envelope-To: <ana@example.org>\nSubject: [water-com")
    with running_server(site) as server:
        wait_until(lambda: "torn file" in server.output(), 10, "the torn file to be named")
        output = server.output()
    assert not torn.exists()
    aside = site / "data" / "set-aside" / "outbox" / torn.name
    assert aside.read_bytes().endswith(b"Subject: [water-com")
    line = next(line for line in output.splitlines() if "torn file" in line)
    assert "WARNING" in line and torn.name in line and str(aside) in line, line
    assert list(tmp.iterdir()) == []
    assert not list((site / "data" / "outbox" / "new").iterdir())  # never a torn copy there
    assert "Traceback" not in output
