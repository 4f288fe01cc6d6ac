"""Full-text search over archived posts and accepted initiatives (SQLite FTS5).

`search(db, words, ...)` turns what someone typed into a safe FTS5 query:
only its words are kept (letters and digits; quotes, stars, operators and
column filters are dropped), each quoted, at most MAX_WORDS of them, so
`"`, `*` or 2 KB of words can never be a syntax error or an expensive
query. Results are ranked (BM25, the subject weighing more) and limited;
posts are restricted to the forums the caller may read. Reads
archive_search, archive_posts, initiatives; writes nothing.
"""

from __future__ import annotations

import re

from listserv.errors import ListservError

MAX_WORDS = 12
MAX_WORD = 40
LIMIT = 20
RANKED = 5000  # matches ranked by relevance; more are shown newest first
_WORD = re.compile(r"\w+", re.UNICODE)


class SearchError(ListservError):
    """The words cannot be searched (none given); str() says what to write."""


def clip(words: str, limit: int = 2000) -> str:
    """At most `limit` characters of `words`, never cutting a word in two."""
    if len(words) <= limit:
        return words
    cut = words[:limit + 1]
    return cut.rsplit(None, 1)[0] if cut[-1:].strip() and " " in cut else words[:limit]


def query_words(words: str) -> list[str]:
    found = [w[:MAX_WORD] for w in _WORD.findall(clip(words, 4000)) if w.strip("_")]
    return list(dict.fromkeys(found))[:MAX_WORDS]


def fts_query(words: list[str]) -> str:
    return " ".join('"' + w.replace('"', "") + '"' for w in words)


def search(db, words: str, *, forums: list[str], initiatives: bool,
           limit: int = LIMIT) -> list[dict]:
    """Up to `limit` results for `words`: posts of the forums (slugs) in `forums`
    and, with `initiatives`, accepted initiatives. SearchError when `words` holds
    no word at all."""
    chosen = query_words(words)
    if not chosen:
        raise SearchError("give one or more words to look for, e.g. 'search water wells'")
    where = []
    params: list = [fts_query(chosen)]
    if forums:
        where.append(f"(rowid > 0 AND forum IN ({','.join('?' * len(forums))}))")
        params += forums
    if initiatives:
        where.append("rowid < 0")
    if not where:
        return []
    condition = f"archive_search MATCH ? AND ({' OR '.join(where)})"
    # bm25 scores every match: past RANKED matches (common words over a big archive) that
    # costs more than a reader waits, so the newest matches come first instead
    many = db.execute(f"SELECT count(*) FROM (SELECT 1 FROM archive_search WHERE {condition} "
                      f"LIMIT {RANKED + 1})", params).fetchone()[0] > RANKED
    order = "rowid DESC" if many else "bm25(archive_search, 4.0, 1.0)"
    rows = db.execute(f"SELECT rowid, subject, forum FROM archive_search WHERE {condition} "
                      f"ORDER BY {order} LIMIT ?", params + [limit]).fetchall()
    results = []
    for rowid, subject, forum in rows:
        if rowid < 0:
            results.append({"kind": "initiative", "ref": f"INIT-{-rowid}", "title": subject,
                            "forum": "", "date": "", "url": f"initiatives/{-rowid}.html"})
        else:
            date = db.execute("SELECT date FROM archive_posts WHERE post_id = ?",
                              [rowid]).fetchone()
            results.append({"kind": "post", "ref": f"{forum}-{rowid}",
                            "title": subject or "(no subject)", "forum": forum,
                            "date": date[0][:10] if date else "",
                            "url": f"{forum}/{rowid}.html"})
    return results


def public_forums(db) -> list[str]:
    return [slug for (slug,) in db.execute("SELECT slug FROM forums WHERE archive = 'public' "
                                           "ORDER BY slug")]
