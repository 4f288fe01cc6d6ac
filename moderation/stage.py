"""The moderation stage of `listserv serve`: new holds and requests, with their notices.

`moderate` is one step of the stage (serve.py runs it while it finds work):
posts the pipeline marked 'hold' become holds, each new hold's facilitators
get their notice, and each newly confirmed subscription request waiting for
approval is recorded and its facilitators told. Every step is a change of
rows in one transaction (a hold and the fact that its notice was queued
are written together), so after a crash the stage picks up what is left
and nothing is noticed twice. CONFIRM_HANDLERS and POST_RULES are what moderation
adds to the pipeline. Writes through holds.py, notices.py and requests.py.
"""

from __future__ import annotations

from datetime import datetime

from moderation.holds import take_holds
from moderation.inbox import handle_decision_mail
from moderation.notices import notify_new_holds
from moderation.requests import take_requests
from moderation.rules import apply_rules


def moderate(db, site, now: datetime, limit: int = 50) -> int:
    """Take new holds, notice them, take new requests; returns how much was done."""
    done = take_holds(db, site, now, limit)
    done += notify_new_holds(db, site, now, limit)
    done += take_requests(db, site, now, limit)
    return done


# What the pipeline calls (incoming.Extensions): the confirm handler for
# decision replies, and the forums' hold rules after each post's policy.
CONFIRM_HANDLERS = (handle_decision_mail,)
POST_RULES = (apply_rules,)
