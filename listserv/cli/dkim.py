"""`listserv dkim show | check | new-key`: the site's DKIM keys and DNS records.

`show` prints the TXT records a site publishes (each DKIM key, SPF, DMARC) as
zone-file lines, or JSON; `check` asks DNS (through `[dns]`) whether each
key's record is published and matches, one line per key, exit status 1 when
one does not; `new-key` writes a new private key file (mode 0600) for a
rotation or an Ed25519 selector. Reads the site's settings and key files.
"""

from __future__ import annotations

from pathlib import Path

import click

from listserv.cli.common import json_option, pass_site, print_json, say
from listserv.delivery.dkim import check_published, dns_records, load_signer, new_key, txt_strings
from listserv.errors import ListservError
from listserv.site.folder import Site


@click.group()
def dkim() -> None:
    """The site's DKIM signing keys and the DNS records to publish."""


@dkim.command()
@json_option
@pass_site
def show(site: Site, as_json: bool) -> None:
    """Print the DNS TXT records the site should publish: DKIM, SPF and DMARC."""
    settings = site.settings
    signer = load_signer(site.folder, settings)
    postmaster = f"postmaster@{settings.domain}"
    records = dns_records(signer, settings.domain, postmaster)
    if as_json:
        print_json([{"name": name, "type": "TXT", "value": value, "purpose": purpose}
                    for name, value, purpose in records])
        return
    if signer is None:
        say("DKIM is off ([dkim] selector is empty): mail is not signed")
    for name, value, purpose in records:
        click.echo(f"; {purpose}")
        click.echo(f"{name}. IN TXT {txt_strings(value)}")


@dkim.command()
@pass_site
def check(site: Site) -> None:
    """Look up each key's published record and say whether it matches, one line each."""
    from listserv.site.dnsquery import make_resolver

    settings = site.settings
    signer = load_signer(site.folder, settings)
    if signer is None:
        raise ListservError("DKIM is off ([dkim] selector is empty); nothing to check")
    results = check_published(signer, make_resolver(settings.dns))
    for good, line in results:
        click.echo(("OK: " if good else "MISMATCH: ") + line)
    if not all(good for good, _ in results):
        raise click.exceptions.Exit(1)


@dkim.command("new-key")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ed25519", is_flag=True, help="An Ed25519 key (RFC 8463) instead of RSA-2048.")
@pass_site
def new_key_command(site: Site, file: Path, ed25519: bool) -> None:
    """Write a new private key to FILE (relative to the site folder), mode 0600.

    Name it in [dkim] next_key_file (a rotation) or ed25519_key_file, set the
    selector, then publish the record `listserv dkim show` prints."""
    site.require()
    path = file if file.is_absolute() else site.folder / file
    new_key(path, "ed25519" if ed25519 else "rsa")
    say(f"Wrote a new {'Ed25519' if ed25519 else 'RSA-2048'} key to {path}")
