"""A newcomer's demo site: after the first post its forums' archives, the forum
directory and the initiatives bank are on the web at `[web] listen`, as
`listserv init --demo` says, served by `listserv serve` itself."""

from __future__ import annotations

from archivekit import archived, get, mail, post_ids
from helpers import free_port, listserv, query, running_server, send_mail


def test_the_demo_shows_its_archives_directory_and_bank_after_the_first_post(tmp_path):
    site = tmp_path / "site"
    made = listserv("init", str(site), "--demo")
    assert "http://127.0.0.1:8080/archive/" in made.stdout + made.stderr  # where to look
    port = free_port()  # the demo's 8080, moved to a free port for the test
    config = site / "listserv.toml"
    text = config.read_text()
    assert 'listen = "127.0.0.1:8080"' in text
    config.write_text(text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
                      .replace('url = "http://127.0.0.1:8080"', f'url = "http://127.0.0.1:{port}"'))
    ((member,),) = query(site, "SELECT m.address FROM members m JOIN forums f ON "
                               "f.id = m.forum_id WHERE f.slug = 'water-commons' AND "
                               "m.mode = 'each' ORDER BY m.address LIMIT 1")
    with running_server(site) as server:
        send_mail(server.port, member, ["water-commons@lists.example.org"],
                  mail("Wells for every village", "The new well is running.",
                       sender=member, to="water-commons@lists.example.org"))
        archived(site, 1)
        directory = get(port, "/archive/")
        home = get(port, "/archive/water-commons/")
        bank = get(port, "/archive/initiatives/")
        (post_id,) = post_ids(site, "water-commons")
        page = get(port, f"/archive/water-commons/{post_id}.html")
    assert directory[0] == 200
    for slug in ("water-commons", "farmers-network", "sahel-network"):
        assert slug.encode() in directory[2], slug
    assert home[0] == 200 and b"Wells for every village" in home[2]
    assert page[0] == 200 and b"The new well is running." in page[2]
    assert member.encode() not in page[2]  # addresses never in full
    assert bank[0] == 200
