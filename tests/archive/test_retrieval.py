"""The archive by email: index, get and search at FORUM-request@ and whatsnew-request@."""

from __future__ import annotations

from archivekit import archived, forum, mail, post_ids, web_site
from helpers import running_server, send_mail

LONG = "\n\n".join(f"Paragraph {n}: the village council met again about the new well, "
                   "the pump, the rota for its care and what each family gives." * 2
                   for n in range(60))  # about 18 KB


def ask(port: int, sender: str, to: str, *lines: str, subject: str = "") -> None:
    """A command mail as Apple Mail writes one: plain text, a signature after '-- '."""
    body = "\n".join(lines) + "\n\n-- \nSent from my iPhone\n"
    send_mail(port, sender.split("<")[-1].strip(">"), [to],
              f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: "
              f"<{abs(hash((sender, lines)))}@icloud.com>\nMIME-Version: 1.0\n"
              f"Content-Type: text/plain; charset=us-ascii\n"
              f"X-Mailer: iPhone Mail (21B101)\n\n{body}")


def replies(sink, address: str, count: int) -> dict[str, str]:
    sink.wait_for(lambda s: len(s.messages_to(address)) >= count, what=f"{count} replies")
    return {m["Subject"]: m.get_content() for m in sink.messages_to(address)}


def test_index_get_and_search_by_email_and_a_members_archive_reveals_nothing(tmp_path,
                                                                             sink):
    folder, _ = web_site(tmp_path, sink)
    forum(folder, "peace")
    forum(folder, "farmers", "--archive", "members")
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("The new well", LONG, message_id="<well@example.org>"))
        send_mail(server.port, "ben@example.net", ["peace@lists.example.org"],
                  mail("Re: The new well", "Count me in for the rota.",
                       sender="Ben <ben@example.net>", message_id="<rota@example.org>",
                       headers="In-Reply-To: <well@example.org>\n"))
        send_mail(server.port, "ana@example.org", ["farmers@lists.example.org"],
                  mail("Seed prices", "Millet seed is dear this year.",
                       message_id="<seed@example.org>", to="farmers@lists.example.org"))
        archived(folder, 3)
        well, rota = post_ids(folder, "peace")
        (seed,) = post_ids(folder, "farmers")
        zoe = "Zoe <zoe@example.net>"
        ask(server.port, zoe, "peace-request@lists.example.org", "index",
            f"get peace-{well}", f"get t{well}", "search count me", 'search " * "')
        got = replies(sink, "zoe@example.net", 5)
        ask(server.port, zoe, "farmers-request@lists.example.org", f"get farmers-{seed}",
            "get farmers-999999", "search millet", "index")
        refused = replies(sink, "zoe@example.net", 7)
        ask(server.port, "Ben <ben@example.net>", "farmers-request@lists.example.org",
            "search millet", f"get {seed}")
        member = replies(sink, "ben@example.net", 3 + 3)  # 3 copies of posts, then these
    index = got["Peace workshop: recent threads"]
    assert f"peace-t{well}" in index and "The new well (2 message(s))" in index
    post = got[f"The new well (peace-{well})"]
    assert "Paragraph 59" in post and "ana at example\u2026" not in post
    thread = got[f"Peace workshop: thread peace-t{well}"]
    assert thread.index("Paragraph 0") < thread.index("Count me in for the rota.")
    found = got["Search results: count me"]
    assert f" 1. peace-{rota}  Re: The new well" in found and f"peace-{well} " not in found
    results = got['Results of your commands for "Peace workshop"']
    assert 'Write "search" followed by the words' in results  # '" * "' has no word
    farmers = refused['Results of your commands for "Farmers workshop"']
    assert f'the reference "farmers-{seed}"' in farmers
    assert farmers.count("Nothing is available by email for the reference") == 2
    assert 'No message you may read matches "millet"' in farmers
    assert set(refused) - set(got) == {'Results of your commands for "Farmers workshop"',
                                       "What's New: what can be fetched by email"}
    assert f"farmers-{seed}  Seed prices" in member["Search results: millet"]
    assert "Millet seed is dear this year." in member[f"Seed prices (farmers-{seed})"]


def test_a_lowband_member_gets_a_post_in_numbered_parts_within_the_budget(tmp_path, sink):
    folder, _ = web_site(tmp_path, sink)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace("lowband_budget = 20000",
                                                 "lowband_budget = 4000"))
    forum(folder, "peace")
    from helpers import listserv
    listserv("member", "add", "peace", "dora@example.org", "--profile", "lowband",
             "--mode", "nomail", "--preconfirmed", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("The new well", LONG, message_id="<well@example.org>"))
        archived(folder, 1)
        (well,) = post_ids(folder)
        ask(server.port, "dora@example.org", "peace-request@lists.example.org",
            f"get peace-{well}")
        sink.wait_for(lambda s: len(s.messages_to("dora@example.org")) >= 6,
                      what="the parts and the results")
    caught = [c for c in sink.caught if "dora@example.org" in c.rcpt_tos]
    parts = sorted((c for c in caught if "(peace-" in c.message["Subject"]),
                   key=lambda c: c.message["Subject"])
    count = len(parts)
    assert count >= 5
    assert all(len(c.data) <= 4000 for c in parts), [len(c.data) for c in parts]
    subjects = {c.message["Subject"] for c in parts}
    assert subjects == {f"The new well (peace-{well}) ({n}/{count})" for n in range(1, count + 1)}
    text = "".join(c.message.get_content() for c in parts)
    assert all(f"Paragraph {n}:" in text for n in range(60))
    assert f"[part 1 of {count}]" in text
