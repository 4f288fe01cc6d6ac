"""Where archived things can be read: the URLs and the list headers that point there.

`forum_url` and `post_url` are the web addresses of a public archive under
`[web] url` (empty when the site has no web address); `list_archive` is the
RFC 2369 `List-Archive` of a forum (its web archive, and the `index` by
email for any kept archive), `archived_at` the RFC 5064 `Archived-At` of
one post. Pure functions of the forum row and the settings.
"""

from __future__ import annotations


def base(web_url: str) -> str:
    return web_url.rstrip("/") + "/archive" if web_url else ""


def forum_url(web_url: str, slug: str) -> str:
    return f"{base(web_url)}/{slug}/" if web_url else ""


def post_url(web_url: str, slug: str, post_id: int) -> str:
    return f"{base(web_url)}/{slug}/{post_id}.html" if web_url else ""


def list_archive(forum: dict, web_url: str, domain: str) -> str:
    """The value of List-Archive without its angle brackets around each URL
    ('' when the forum keeps no archive and names none)."""
    if forum.get("archive_url"):
        return f"<{forum['archive_url']}>"
    policy = forum.get("archive", "members")
    if policy == "none":
        return ""
    urls = []
    if policy == "public" and web_url:
        urls.append(forum_url(web_url, forum["slug"]))
    urls.append(f"mailto:{forum['slug']}-request@{domain}?subject=index")
    return ", ".join(f"<{url}>" for url in urls)


def archived_at(forum: dict, web_url: str, post_id: int) -> str:
    """Archived-At for a post of a public archive on the web, else ''."""
    if forum.get("archive") != "public" or not web_url:
        return ""
    return f"<{post_url(web_url, forum['slug'], post_id)}>"
