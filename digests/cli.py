"""`listserv initiative|whatsnew|digest|templates ...`: the secretariat's commands.

Thin: parse, call one function of the digests package, print. Data goes to
stdout (`--json` on lists), messages to stderr. Writes go through
`site.write_now`, each in one transaction; mail they queue is sent by the
running `listserv serve`. A hidden `--at ISO` option on the commands that
depend on the time lets tests (and a secretariat catching up by hand) act
as of another moment; the clock is never patched.
"""

from __future__ import annotations

import click

from digests import forum_digest, initiatives, publications, templating, whatsnew
from digests.template_check import (
    check_source,
    check_web_page,
    editable_names,
    shipped_source,
    web_page_names,
)
from digests.template_strays import stray_templates
from listserv.cli.common import (
    at_option,
    json_option,
    local_user,
    pass_site,
    print_fields,
    print_json,
    print_table,
    say,
    server_pid,
    utcnow,
)
from listserv.cli.common import moment as _moment
from listserv.errors import ListservError
from listserv.site.folder import Site


def _sent_by_server(site: Site) -> None:
    if server_pid(site) is None:
        say("The copies are queued; they go out when 'listserv serve' runs.")


# -- initiatives --------------------------------------------------------------------

@click.group("initiative")
def initiative() -> None:
    """Review the initiatives allies report to whatsnew@."""


@initiative.command("list")
@click.option("--status", type=click.Choice(["review", "accepted", "rejected", "published"]),
              help="Only these (accepted: waiting for the next What's New).")
@json_option
@pass_site
def initiative_list(site: Site, status: str | None, as_json: bool) -> None:
    """List reported initiatives, newest first."""
    rows = initiatives.list_initiatives(site.db, status)
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, created=r["created_at"][:16], status=r["status"] if not
                      r["publication"] else f"published ({r['publication']})") for r in rows],
                [("ref", "ref"), ("status", "status"), ("created", "reported"),
                 ("reporter", "by"), ("language", "lang"), ("title", "title")],
                empty="No initiatives" + (f" with status {status}." if status else " yet."))


@initiative.command("show")
@click.argument("ref", metavar="ID")
@json_option
@pass_site
def initiative_show(site: Site, ref: str, as_json: bool) -> None:
    """Show one initiative in full."""
    row = initiatives.get(site.db, initiatives.parse_id(ref))
    if as_json:
        print_json(row)
        return
    print_fields([(key.replace("_", " ").capitalize(), row[key]) for key in (
        "ref", "status", "title", "link", "region", "path", "forum", "language", "happens",
        "reporter", "created_at", "accepted_at", "publication", "reason") if row[key]])
    click.echo()
    click.echo(row["text"])


@initiative.command("accept")
@click.argument("ref", metavar="ID")
@at_option
@pass_site
def initiative_accept(site: Site, ref: str, at: str | None) -> None:
    """Accept an initiative for the next What's New (ID: 42 or INIT-42)."""
    moment = _moment(at)
    done = site.write_now(lambda db: initiatives.accept(db, site, initiatives.parse_id(ref),
                                                        local_user(), moment))
    say(f"{done['ref']} accepted for the next What's New." if done["changed"]
        else f"{done['ref']} was already accepted.")


@initiative.command("reject")
@click.argument("ref", metavar="ID")
@click.option("--reason", default="", help="Told to the reporter.")
@pass_site
def initiative_reject(site: Site, ref: str, reason: str) -> None:
    """Reject an initiative; the reporter is told why."""
    done = site.write_now(lambda db: initiatives.reject(
        db, site, initiatives.parse_id(ref), local_user(), reason, utcnow()))
    say(f"{done['ref']} rejected; the reporter is told." if done["changed"]
        else f"{done['ref']} was already rejected.")


# -- What's New -----------------------------------------------------------------------

@click.group("whatsnew")
def whatsnew_group() -> None:
    """Preview, publish and list the What's New bulletin."""


@whatsnew_group.command("preview")
@click.option("--language", help="The language of the headings (default: the site's).")
@click.option("--html", "as_html", is_flag=True, help="Print the HTML part instead.")
@at_option
@pass_site
def whatsnew_preview(site: Site, language: str | None, as_html: bool, at: str | None) -> None:
    """Show the next issue as it would go out now; nothing is stored or sent."""
    language = language or site.settings.site.default_language
    subject, text, html, count = whatsnew.preview(site.db, site, language, _moment(at))
    say(f"{count} accepted initiative(s) would be in it.")
    if as_html:
        click.echo(html)
    else:
        click.echo(f"Subject: {subject}\n\n{text}")


@whatsnew_group.command("publish")
@click.option("--now", "right_now", is_flag=True,
              help="Publish every accepted initiative now, whatever the schedule.")
@json_option
@at_option
@pass_site
def whatsnew_publish(site: Site, right_now: bool, as_json: bool, at: str | None) -> None:
    """Publish the issue the schedule owes (or, with --now, one now).

    Prints the key of each issue published; with --json, the published keys
    and when the next issue is due."""
    moment = _moment(at)
    if right_now:
        keys = [site.write_now(lambda db: whatsnew.publish_now(db, site, moment))]
    else:
        keys = site.write_now(lambda db: whatsnew.publish_due(db, site, moment))
    if as_json:
        coming = whatsnew.next_issue(site, moment)
        print_json({"published": keys, "next": coming.isoformat() if coming else None})
        if keys:
            _sent_by_server(site)
        return
    if not keys:
        coming = whatsnew.next_issue(site, moment)
        say("Nothing is owed now" + (f"; the next issue is due {coming:%Y-%m-%d %H:%M %Z}"
                                     if coming else "") + ". Use --now to publish anyway.")
        return
    for key in keys:
        click.echo(key)
    _sent_by_server(site)


@whatsnew_group.command("list")
@json_option
@pass_site
def whatsnew_list(site: Site, as_json: bool) -> None:
    """List the issues published, newest first."""
    rows = publications.list_publications(site.db, "whatsnew")
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, ref=f"WN-{r['number']}", when=(r["created_at"] or "")[:16])
                 for r in rows],
                [("ref", "issue"), ("when", "published"), ("status", "status"),
                 ("recipients", "recipients"), ("title", "title")], empty="No issue yet.")


# -- forum digests ----------------------------------------------------------------------

@click.group("digest")
def digest_group() -> None:
    """Send and list forum digests."""


@digest_group.command("send")
@click.argument("slug", required=False)
@at_option
@pass_site
def digest_send(site: Site, slug: str | None, at: str | None) -> None:
    """Send a digest now of the posts waiting for one (all forums, or SLUG)."""
    moment = _moment(at)
    keys = site.write_now(lambda db: forum_digest.send_now(db, site, slug, moment))
    for key in keys:
        click.echo(key)
    if not keys:
        say("No posts are waiting for a digest.")
    else:
        _sent_by_server(site)


@digest_group.command("list")
@json_option
@pass_site
def digest_list(site: Site, as_json: bool) -> None:
    """List the digests sent, newest first."""
    rows = publications.list_publications(site.db, "digest")
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, when=(r["created_at"] or "")[:16], issue=f"{r['volume']}/{r['number']}")
                 for r in rows],
                [("forum", "forum"), ("issue", "vol/issue"), ("when", "sent"),
                 ("status", "status"), ("recipients", "recipients"), ("title", "title")],
                empty="No digest yet.")


# -- templates --------------------------------------------------------------------------

@click.group("templates")
def templates_group() -> None:
    """Check, preview, and roll back the site's templates."""


@templates_group.command("list")
@json_option
@pass_site
def templates_list(site: Site, as_json: bool) -> None:
    """List every template in every site language, and which version is in use."""
    rows = templating.overview(site.db, site)
    if as_json:
        print_json(rows)
        return
    print_table(rows, [("name", "template"), ("language", "lang"), ("source", "in use"),
                       ("version", "version"), ("state", "working copy")])


@templates_group.command("check")
@json_option
@pass_site
def templates_check(site: Site, as_json: bool) -> None:
    """Check every template in every site language with sample data; a good edit
    in templates/ is activated, a broken one is reported with file:line, and a
    file in templates/ that matches no template (a misspelt name) is named.
    Exits with status 1 when any template is broken or any file is stray."""
    done = templating.sync(site, utcnow())
    activated = [row for row in done if row["outcome"] == "activated"]
    results = []
    for name in sorted(editable_names()):
        for language in site.settings.site.languages:
            source = templating.read_working(site, language, name)
            where = "site" if source is not None else "shipped"
            if source is None:
                source = shipped_source(name, language)
            checked = check_source(site, language, name, source)
            results.append({"template": name, "language": language, "source": where,
                            "ok": checked.ok, "errors": list(checked.errors)})
    for name in sorted(web_page_names()):
        for language in site.settings.site.languages:
            source = templating.read_working(site, language, name)
            where = "site" if source is not None else "shipped"
            if source is None:
                source = shipped_source(name, language)
            checked = check_web_page(site, language, name, source)
            results.append({"template": name, "language": language, "source": where,
                            "ok": checked.ok, "errors": list(checked.errors)})
    strays = stray_templates(site)
    failures = sum(not row["ok"] for row in results)
    if as_json:
        print_json({"activated": [{"template": row["label"], "version": row["version"]}
                                  for row in activated],
                    "templates": results, "stray": strays})
    else:
        for row in activated:
            say(f"activated {row['label']} as version {row['version']}")
        for row in results:
            if row["ok"]:
                click.echo(f"ok      {row['language']}/{row['template']} ({row['source']})")
            for error in row["errors"]:
                click.echo(f"BROKEN  {error}")
        for row in strays:
            click.echo(f"STRAY   templates/{row['path']}: {row['reason']}")
    problems = []
    if failures:
        problems.append(f"{failures} template(s) have errors; the last good version of "
                        f"each stays in use")
    if strays:
        problems.append(f"{len(strays)} file(s) in templates/ match no template and are "
                        f"never used")
    if problems:
        raise ListservError("; ".join(problems))


@templates_group.command("preview")
@click.argument("name")
@click.option("--language", help="The language (default: the site's).")
@pass_site
def templates_preview(site: Site, name: str, language: str | None) -> None:
    """Render template NAME (the site's working copy, else the shipped one)
    with sample data."""
    language = language or site.settings.site.default_language
    source = templating.read_working(site, language, name)
    if source is None:
        source = shipped_source(name, language) if name in editable_names() else ""
    checked = check_source(site, language, name, source)
    if not checked.ok:
        for error in checked.errors:
            click.echo(error, err=True)
        raise ListservError(f"{checked.label} does not pass its check; nothing to preview")
    click.echo(checked.preview)


@templates_group.command("history")
@click.argument("name")
@click.option("--language", help="Only this language.")
@json_option
@pass_site
def templates_history(site: Site, name: str, language: str | None, as_json: bool) -> None:
    """List every version of template NAME: active, superseded, broken, by email."""
    rows = templating.history(site.db, name, language)
    if as_json:
        print_json(rows)
        return
    print_table([dict(r, when=(r["activated_at"] or r["created_at"])[:16],
                      who=r["by"] or "-", error=(r["error"] or "").split("\n")[0],
                      text="shipped default" if r["shipped"] else "site") for r in rows],
                [("version", "version"), ("language", "lang"), ("status", "status"),
                 ("via", "via"), ("who", "by"), ("when", "when"), ("text", "text"),
                 ("error", "error")], empty=f"No site version of {name} yet (the shipped "
                                            f"default is in use).")


@templates_group.command("rollback")
@click.argument("name")
@click.option("--language", help="The language (default: the site's).")
@click.option("--to", "to", type=int, help="This version (0: the shipped default) instead "
                                           "of the one before.")
@pass_site
def templates_rollback(site: Site, name: str, language: str | None, to: int | None) -> None:
    """Put back the previous good version of template NAME."""
    language = language or site.settings.site.default_language
    done = site.write_now(lambda db: templating.rollback(db, site, name, language, utcnow(),
                                                         local_user(), to))
    say(f"{language}/{name}: version {done['to']} is back in use (as version "
        f"{done['version']}).")


COMMANDS = (initiative, whatsnew_group, digest_group, templates_group)
