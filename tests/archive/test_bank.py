"""The forum directory and the initiatives bank, on the web and searched by email."""

from __future__ import annotations

import html
import quopri

from archivekit import WEB, archived, forum, get, mail, web_site
from helpers import listserv, query, running_server, send_mail, wait_until

SEEDS = ("Nous avons ouvert une banque de semences avec vingt familles de Kayes; "
         "moussa@example.org tient le registre.\nLien : https://example.org/semences\n"
         "Forum: sahel\n\n-- \nMoussa\n")


def test_directory_bank_issue_pages_and_search_after_a_report_and_an_issue(tmp_path, sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder, "peace")
    forum(folder, "farmers", "--archive", "members")
    listserv("forum", "edit", "farmers", "--path", "socioprofessional", site=folder)
    listserv("forum", "create", "sahel", "--title", "Réseau Sahel", "--path", "geocultural",
             "--language", "fr", site=folder)
    listserv("member", "add", "sahel", "moussa@example.org", "--language", "fr",
             "--preconfirmed", site=folder)
    listserv("forum", "create", "council", "--title", "Council", "--path", "thematic",
             "--archive", "members", site=folder)
    listserv("forum", "edit", "council", "--subscription", "approve", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("Seeds and wells", "Kayes families share seeds.",
                       message_id="<s@example.org>"))
        send_mail(server.port, "moussa@example.org", ["whatsnew@lists.example.org"],
                  "From: Moussa <moussa@example.org>\nTo: whatsnew@lists.example.org\n"
                  "Subject: Banque de semences\nMessage-ID: <bank@example.org>\n\n" + SEEDS)
        wait_until(lambda: query(folder, "SELECT id FROM initiatives WHERE status = "
                                         "'accepted'"), what="the initiative accepted")
        listserv("whatsnew", "publish", "--now", site=folder)
        sink.wait_for_recipient("ben@example.net", 2)  # the post and the issue
        wait_until(lambda: get(web, "/archive/whatsnew/1.html")[0] == 200, 30,
                   what="the issue's page")
        archived(folder, 1)
        pages = {path: get(web, f"/archive/{path}") for path in (
            "", "directory-fr.html", "initiatives/index.html", "initiatives/1.html",
            "whatsnew/1.html", "whatsnew/feed.atom")}
        found = get(web, "/archive/search?q=Kayes")[2].decode()
        body = quopri.encodestring(("search semences\nsearch " + "kayes " * 400
                                    + "\n").encode()).decode()  # 2 KB on one line
        send_mail(server.port, "zoe@example.net", ["whatsnew-request@lists.example.org"],
                  "From: zoe@example.net\nTo: whatsnew-request@lists.example.org\n"
                  "Subject: Recherche\nMIME-Version: 1.0\nContent-Type: text/plain; "
                  "charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + body)
        sink.wait_for(lambda s: len(s.messages_to("zoe@example.net")) >= 3)
    assert all(status == 200 for status, _, _ in pages.values()), \
        {k: v[0] for k, v in pages.items()}
    home = pages[""][2].decode()
    thematic = home.index("Thematic forums")
    socio = home.index("Socio-professional networks")
    geo = home.index("Regions and places")
    assert thematic < home.index("Peace workshop") < socio < home.index("Farmers workshop") \
        < geo < home.index("Réseau Sahel")
    assert '<a href="peace/index.html">Peace workshop</a>' in home
    assert '<a href="farmers/index.html">' not in home  # its archive is for members only
    assert "Council" not in home  # neither a public archive nor open subscription
    assert "peace-join@lists.example.org" in home and "Members: 2" in home
    assert "Annuaire des forums" in pages["directory-fr.html"][2].decode()
    initiative = html.unescape(pages["initiatives/1.html"][2].decode())
    assert "banque de semences avec vingt familles" in initiative
    assert "moussa at example\u2026" in initiative and "moussa@example.org" not in initiative
    assert 'href="../whatsnew/1.html"' in initiative
    assert 'href="https://example.org/semences"' in initiative
    bank = pages["initiatives/index.html"][2].decode()
    assert bank.count('href="1.html"') == 4  # by path, region, forum and month
    assert 'href="../initiatives/1.html"' in pages["whatsnew/1.html"][2].decode()
    assert b"<entry>" in pages["whatsnew/feed.atom"][2]
    assert 'href="initiatives/1.html"' in found and "Seeds and wells" in found
    issue = [m for m in sink.messages_to("ben@example.net") if "What" in m["Subject"]][0]
    text = "".join(p.get_content() for p in issue.walk() if p.get_content_type() == "text/plain")
    assert f"Web: {WEB}/archive/initiatives/1.html" in text
    answers = {m["Subject"]: m.get_content() for m in sink.messages_to("zoe@example.net")}
    assert "INIT-1  Banque de semences" in answers["Search results: semences"]
    (both,) = [text for subject, text in answers.items()
               if subject.startswith("Search results: kayes kayes")]  # 2 KB of words
    assert "INIT-1  Banque de semences" in both and "peace-1  Seeds and wells" in both
