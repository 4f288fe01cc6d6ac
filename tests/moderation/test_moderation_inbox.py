"""The decision mailbox's checks, through the real pipeline at a chosen time:
a reply without a clear decision, a token used at another forum's address,
and which Authentication-Results count."""

from __future__ import annotations

import email
import email.policy

import pytest
from facilitation import DOMAIN, FAC, NOW, ZOE, Pipeline, forum_site, letter, post, text_of

from listserv.mail.message import parse
from listserv.site import forums
from moderation.inbox import authenticated


@pytest.fixture
def rig(tmp_path, sink) -> Pipeline:
    pipeline = Pipeline(forum_site(tmp_path, sink))
    pipeline.receive(post(), ZOE, [f"peace@{DOMAIN}"], NOW)
    return pipeline


def answers(rig: Pipeline, address: str = FAC) -> list:
    rows = rig.site.db.execute(
        "SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id WHERE d.recipient = ? "
        "AND d.ref LIKE 'reply:%' ORDER BY d.id", [address]).fetchall()
    return [email.message_from_bytes(raw, policy=email.policy.default) for (raw,) in rows]


def decision_address(rig: Pipeline) -> str:
    (raw,) = rig.site.db.execute("SELECT b.raw FROM deliveries d JOIN bodies b ON "
                                 "b.id = d.body_id WHERE d.ref = 'held:1' AND d.recipient = ?",
                                 [FAC]).fetchone()
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Reply-To"])


def status(rig: Pipeline) -> str:
    return rig.site.db.execute("SELECT status FROM holds WHERE id = 1").fetchone()[0]


def test_a_reply_without_a_clear_decision_is_answered_and_the_address_still_works(rig):
    address = decision_address(rig)
    rig.receive(letter(FAC, address, "Re: held", "Looks fine to me\n"), FAC, [address], NOW)
    rig.receive(letter(FAC, address, "approve", "reject\n"), FAC, [address], NOW)
    unclear, conflict = answers(rig)
    assert "No decision was found in your reply" in " ".join(text_of(unclear).split())
    assert "ask for different decisions" in " ".join(text_of(conflict).split())
    assert status(rig) == "held"
    rig.receive(letter(FAC, address, "Re: held", "approve\n"), FAC, [address], NOW)
    assert status(rig) == "approved"


def test_a_decision_token_sent_to_another_forums_address_does_nothing(rig):
    forums.create(rig.site.db, "water", title="Water", path="thematic", now=NOW,
                  facilitators=(FAC,))
    token = decision_address(rig).split("+")[1].split("@")[0]
    elsewhere = f"water-confirm+{token}@{DOMAIN}"
    rig.receive(letter(FAC, elsewhere, "approve", "approve\n"), FAC, [elsewhere], NOW)
    (answer,) = answers(rig)
    assert "belongs to another forum" in " ".join(text_of(answer).split())
    assert status(rig) == "held"


def results(*headers: str):
    raw = "".join(f"Authentication-Results: {h}\r\n" for h in headers)
    return parse((f"{raw}From: Fac <{FAC}>\r\nSubject: approve\r\n\r\nok\r\n").encode(),
                 FAC)


@pytest.mark.parametrize("headers, trusted", [
    (("mx.example.org; dkim=pass header.d=example.org",), True),
    (("mx.example.org; dkim=pass (good) header.d=Example.ORG header.s=k1",), True),
    (("MX.example.org; spf=fail; dmarc=pass header.from=example.org",), True),
    (("mx.example.org; dkim=pass header.d=other.example",), False),
    (("mx.example.org; dkim=fail header.d=example.org",), False),
    (("mx.example.org; spf=pass smtp.mailfrom=fac@example.org",), False),
    (("evil.example; dkim=pass header.d=example.org",), False),
    (("mx.example.org; dkim=fail header.d=example.org",
      "mx.example.org; dkim=pass header.d=example.org"), False),  # only the topmost counts
    (("mx.example.org; ;;; dkim=pass garbage ((",), False),
])
def test_only_a_trusted_hosts_topmost_dkim_or_dmarc_pass_for_the_from_domain_counts(
        headers, trusted):
    assert authenticated(results(*headers), FAC, ("mx.example.org",)) is trusted
