"""`listserv archive ...`: write the web archive again, or take a post out of it.

`rebuild [FORUM]` writes every page (of one forum, or of all and the
directory and bank) from the store: the same bytes every time, and pages
no longer backed by the store removed. `remove REF` takes a post out of
the pages, feeds and search at an ally's request, and writes its pages.
Thin commands over stage.py and keep.py.
"""

from __future__ import annotations

import click

from listserv.archive import keep, pages, stage
from listserv.cli.common import pass_site, say, utcnow
from listserv.site.folder import Site


@click.group("archive")
def archive() -> None:
    """Write the forums' web archives again, or take a post out of them."""


@archive.command("rebuild")
@click.argument("slug", required=False)
@pass_site
def archive_rebuild(site: Site, slug: str | None) -> None:
    """Write every archive page again from the store (of FORUM, or of all)."""
    count = stage.rebuild(site, site.db, slug, utcnow())
    say(f"Wrote {count} archive page(s) under {pages.root(site)}")


@archive.command("remove")
@click.argument("ref")
@pass_site
def archive_remove(site: Site, ref: str) -> None:
    """Take the post REF (e.g. peace-42) out of the pages, feeds and search."""
    removed = keep.remove_post(site.db, ref, utcnow())
    forum = site.db["forums"].get(removed["forum_id"])
    pages.write_forum(site, site.db, forum)
    if removed["was"] == "kept":
        say(f"Removed {removed['ref']} from the archive of '{forum['slug']}'")
    else:
        say(f"{removed['ref']} was already out of the archive")
