"""What every `listserv` command shares: the error edge, output and the clock.

`Cli` is the root group's class: a ListservError becomes one line on stderr
and exit status 1, and so does any exception we did not foresee (never a
traceback, unless `--traceback` asks for one). Usage errors stay click's
(exit status 2). Output helpers print data to stdout (plain columns, or JSON
with `--json`) and messages to stderr. Reads and writes nothing itself.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
from collections.abc import Iterable
from datetime import datetime, timezone

import click

from listserv.errors import ListservError
from listserv.site.folder import Site


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "no details"


class Cli(click.Group):
    """The root group: turns our errors, and any other failure, into one line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ListservError as error:  # one line on stderr, exit status 1
            raise click.ClickException(_one_line(str(error))) from error
        except Exception as error:  # a bug, a library or the system: still one line
            if isinstance(error, OSError) and error.errno == errno.EPIPE:
                raise  # `listserv member list x | head`: click exits quietly
            if ctx.meta.get("listserv.traceback"):
                raise
            what = "" if isinstance(error, OSError) else f"unexpected {type(error).__name__}: "
            raise click.ClickException(_one_line(
                f"{what}{error} (run again with --traceback for details)")) from error


# The Site the root group made; nothing is opened until it is used.
pass_site = click.make_pass_decorator(Site)


def utcnow() -> datetime:
    """The command line is the edge where the real clock is read."""
    return datetime.now(timezone.utc)


def moment(value: str | None) -> datetime:
    """The moment a command acts as of: `--at ISO` (hidden; for tests and for
    catching up by hand), else the real clock. The clock is never patched."""
    if not value:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a time like 2026-12-01T06:00:00+00:00",
                                 param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


at_option = click.option("--at", "at", hidden=True, metavar="ISO",
                         help="Act as of this moment instead of now.")


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "cli"


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of columns.")


def say(message: str) -> None:
    """A message for the person at the terminal (stderr, never data)."""
    click.echo(message, err=True)


def print_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def stream_json_list(rows: Iterable[dict]) -> None:
    """Print a JSON list one object at a time, so a long list is never in memory."""
    first = True
    for row in rows:
        click.echo(("[\n  " if first else ",\n  ") + json.dumps(row, ensure_ascii=False,
                                                                default=str), nl=False)
        first = False
    click.echo("[]" if first else "\n]")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return " ".join(str(value).split())


def print_table(rows: list[dict], columns: list[tuple[str, str]], empty: str = "") -> None:
    """Print `rows` as aligned columns; `columns` is [(key, heading)]."""
    if not rows:
        if empty:
            say(empty)
        return
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(heading)] + [len(line[i]) for line in cells])
              for i, (_, heading) in enumerate(columns)]
    widths[-1] = 0  # the last column is never padded
    click.echo("  ".join(h.upper().ljust(w) for (_, h), w in zip(columns, widths)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def print_fields(pairs: list[tuple[str, object]]) -> None:
    """Print `name: value` lines, names aligned."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{(name + ':').ljust(width + 1)} {_cell(value)}")


def age(seconds: float | None) -> str:
    """A short readable duration: '45s', '12m', '3h 5m', '2d 4h'."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def server_pid(site: Site) -> str | None:
    """The pid of the `listserv serve` holding the site's lock, else None.

    A running serve holds an exclusive flock on data/serve.lock; a shared,
    non-blocking flock here fails exactly when one does."""
    path = site.data / "serve.lock"
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
