"""What the archive's tests share: a served site with a web port, and posts in
the shapes real clients send."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from helpers import free_port, listserv, make_site, query, wait_until

WEB = "https://lists.example.org"


def web_site(tmp_path, sink, *extra_toml: str) -> tuple[Path, int]:
    """A site with [web] url set and its listener on a free loopback port."""
    port = free_port()
    folder = make_site(tmp_path, sink, *extra_toml, web_url=WEB)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"',
                                                 f'listen = "127.0.0.1:{port}"'))
    return folder, port


def forum(folder: Path, slug: str = "peace", *options: str,
          members: tuple[str, ...] = ("ana@example.org", "ben@example.net")) -> None:
    listserv("forum", "create", slug, "--title", f"{slug.title()} workshop", "--path",
             "thematic", "--description", f"Sharing what works for {slug}.", *options,
             site=folder)
    for address in members:
        listserv("member", "add", slug, address, "--preconfirmed", site=folder)


def get(port: int, path: str) -> tuple[int, dict, bytes]:
    """(status, headers, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def archived(folder: Path, count: int, timeout: float = 30) -> None:
    """Wait until `count` posts are archived and no page is left to write."""
    def done() -> bool:
        kept = query(folder, "SELECT count(*) FROM posts WHERE archive_status IS NOT NULL")
        left = query(folder, "SELECT count(*) FROM archive_dirty")
        return kept[0][0] >= count and left[0][0] == 0
    try:
        wait_until(done, timeout, f"{count} posts archived and their pages written")
    except AssertionError as error:
        posts = query(folder, "SELECT id, status, reason, archive_status FROM posts")
        raise AssertionError(f"{error}; posts: {posts}") from None


def post_ids(folder: Path, slug: str = "peace") -> list[int]:
    return [row[0] for row in query(
        folder, "SELECT a.post_id FROM archive_posts a JOIN forums f ON f.id = a.forum_id "
        "WHERE f.slug = ? AND a.status = 'kept' ORDER BY a.post_id", (slug,))]


def mail(subject: str, body: str, *, sender: str = "Ana <ana@example.org>",
         message_id: str = "<m1@example.org>", headers: str = "",
         to: str = "peace@lists.example.org") -> str:
    """A plain post as Thunderbird writes it (CRLF line ends)."""
    return (f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {message_id}\n"
            f"Date: Wed, 02 Dec 2026 09:00:00 +0000\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=UTF-8; format=flowed\n"
            f"Content-Transfer-Encoding: 8bit\nUser-Agent: Mozilla Thunderbird\n{headers}\n"
            f"{body}\n").replace("\n", "\r\n")


def json_of(result) -> list | dict:
    return json.loads(result.stdout)
