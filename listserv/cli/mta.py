"""`listserv mta postfix [--output DIR]`: the maps that put Postfix in front.

Writes the transport map and the relay recipient map (listserv.site.mta) for
the site's forums and site addresses, then prints the `postmap` commands,
the `main.cf` lines and the listserv.toml lines for sending out through that
Postfix. `refresh_maps` rewrites the maps after a command that changes the
set of forums, when they were written to the default folder before.
"""

from __future__ import annotations

from pathlib import Path

import click

from listserv.cli.common import pass_site, say
from listserv.site import mta as maps
from listserv.site.folder import Site


def site_addresses(site: Site) -> frozenset[str]:
    """The site addresses `serve` accepts (whatsnew@, templates@, relay@...)."""
    from listserv.serve import wire_extensions
    from relays.serving import relay_extensions

    return relay_extensions(site, wire_extensions(site)).site_addresses


def refresh_maps(site: Site) -> None:
    """Rewrite (and postmap) the maps in the default folder if `mta postfix` wrote
    them there."""
    if maps.refresh_maps(site, site_addresses(site)):
        say(f"Rewrote the Postfix maps in {site.folder / 'data' / 'postfix'}/")


@click.group()
def mta() -> None:
    """Maps and settings for a mail server in front of listserv."""


@mta.command()
@click.option("--output", type=click.Path(path_type=Path),
              help="The folder for the maps (default: the site's data/postfix/).")
@pass_site
def postfix(site: Site, output: Path | None) -> None:
    """Write Postfix's transport and relay recipient maps; print the lines to use."""
    site.require()
    settings = site.settings
    folder, paths = maps.site_maps(site, site_addresses(site), output)
    folder = folder.resolve()
    mapped = maps.run_postmap(paths)
    say(f"Wrote {', '.join(str(path) for path in paths)}"
        + (" and ran postmap on them" if mapped else "; postmap is not on this machine"))
    click.echo("# Run after writing them elsewhere (listserv rewrites and postmaps the maps in"
               " data/postfix/ when forums change):")
    for path in paths:
        click.echo(f"postmap {folder / path.name}")
    click.echo("# main.cf:")
    for line in maps.main_cf_lines(settings.domain, folder):
        click.echo(line)
    click.echo("# listserv.toml, to send out through this Postfix:")
    for line in maps.smarthost_lines("127.0.0.1:25"):
        click.echo(line)
