"""The `listserv` command line: the root group, `init` and `serve`.

Commands are thin: parse, call one core function, print. Data goes to
stdout (`--json` for JSON), messages to stderr; errors are one line and a
non-zero exit (see common.Cli). The forum and member commands are in
forums.py, the hold commands in held.py, `queue` and `status` in
status.py, `dkim` in dkim.py, `mta` in mta.py. The cli modules and serve.py are where the packages are
wired together; the site is opened only when a command needs it, so
`--help` works in any folder.
"""

from __future__ import annotations

from pathlib import Path

import click

from digests.cli import COMMANDS as DIGEST_COMMANDS
from digests.wiring import STATUS as DIGEST_STATUS
from listserv.archive.cli import archive
from listserv.cli.common import Cli, pass_site, say, utcnow
from listserv.cli.dkim import dkim
from listserv.cli.forums import forum
from listserv.cli.members import member
from listserv.cli.held import held
from listserv.cli.imports import import_mailman
from listserv.cli.mta import mta
from listserv.cli.ops import COMMANDS as OPS_COMMANDS
from listserv.cli.ops import held_retry, queue_retry
from listserv.cli.status import SECTIONS, queue_command, status
from listserv.site.folder import Site
from moderation.cli import request_group, sender_group
from relays.cli import COMMANDS as RELAY_COMMANDS
from relays.status import SECTION as RELAY_STATUS


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--site", envvar="LISTSERV_SITE", default="site", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The site folder (or set LISTSERV_SITE).")
@click.option("--traceback", is_flag=True, hidden=True,
              help="Show the full traceback of an unexpected error.")
@click.version_option(package_name="listserv", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, site: Path, traceback: bool) -> None:
    """Run a federated email forum site: forums, members, moderation, delivery."""
    ctx.meta["listserv.traceback"] = traceback
    ctx.obj = Site(site)  # opens the database on first use, so --help works anywhere


cli.add_command(forum)
cli.add_command(member)
cli.add_command(held)
cli.add_command(archive)
cli.add_command(request_group)
cli.add_command(sender_group)
cli.add_command(queue_command)
cli.add_command(status)
for _command in OPS_COMMANDS:  # backup, purge
    cli.add_command(_command)
queue_command.add_command(queue_retry)
forum.add_command(import_mailman)
held.add_command(held_retry)
cli.add_command(dkim)
cli.add_command(mta)
for _command in RELAY_COMMANDS:  # relay, recipient, translation, postal
    cli.add_command(_command)
SECTIONS.append(RELAY_STATUS)
for _command in DIGEST_COMMANDS:  # initiative, whatsnew, digest, templates
    cli.add_command(_command)
SECTIONS.append(DIGEST_STATUS)


@cli.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--domain", help="The site's mail domain, e.g. lists.example.org.")
@click.option("--role", type=click.Choice(["hub", "relay"]),
              help="hub (the default) or relay (a regional node).")
@click.option("--demo", is_flag=True, help="Add sample forums on the three paths, with members.")
@pass_site
def init(site: Site, folder: Path | None, domain: str | None, role: str | None,
         demo: bool) -> None:
    """Create a site folder: listserv.toml, templates/, charter/ and data/.

    FOLDER defaults to --site. An existing site is never overwritten."""
    from listserv.site.init import init_site

    target = folder or site.folder
    created = init_site(target, now=utcnow(), domain=domain, role=role, demo=demo)
    settings = created.settings
    say(f"Created the {settings.site.role} site {settings.domain} in {target}/")
    say("  listserv.toml  settings, documented inline (edit [site] domain and secretariat)")
    say("  templates/     your own templates; see templates/README.txt")
    charters = ", ".join(created.charters) or "none shipped yet"
    say(f"  charter/       the charter text per language ({charters})")
    say("  data/          database and outbox (git-ignored)")
    if created.forums:
        say(f"Demo forums: {', '.join(created.forums)} (see 'listserv forum list'); their "
            f"archives, the directory and the initiatives bank: {settings.web.url}/archive/")
    site_arg = "" if target == Path("site") else f" --site {target}"
    say(f"Next: listserv{site_arg} serve")


@cli.command()
@click.option("--listen", metavar="HOST:PORT",
              help="Where the intake server listens; overrides [smtp] listen.")
@pass_site
def serve(site: Site, listen: str | None) -> None:
    """Run the site: mail intake, delivery and the scheduler, in one process.

    Stop it with Ctrl-C (or SIGTERM); everything accepted is on disk first,
    so a restart picks up where it stopped. One serve per site."""
    from listserv.site.settings import parse_hostport

    if listen is not None:
        try:
            parse_hostport(listen)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--listen") from None
    from listserv import serve as serving

    site.require()
    site.settings  # a config error stops us here, before anything listens
    serving.run(site, listen=listen)


def main() -> None:
    """The console script: `listserv ...`."""
    cli(prog_name="listserv")
