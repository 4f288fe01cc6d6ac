"""`listserv serve` as a system service: its log, systemd's notify socket, SIGHUP.

- `configure_logging(site)` sends the log where `[log]` says: stderr (the
  journal, under systemd) or a file, and syslog as well when asked, at the
  configured level, one line per event: a traceback is folded onto the line
  of the event it belongs to. The file is a WatchedFileHandler, so when
  logrotate moves it away the next line goes to a new file of the same name
  (and SIGHUP reopens it too).
- `notify(...)` speaks the sd_notify protocol: one datagram to the socket
  named by $NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1, STATUS=...).
  Without that variable (not started by systemd) it does nothing.
- `RELOAD_HOOKS` is what SIGHUP runs, in order, after the templates: each is
  `async def hook(site) -> str | None` (a word for the log, e.g. "TLS
  certificates"). The TLS listener adds its own (re-reading its certificate
  and key files) by appending to it.

Reads the settings and the environment; writes the log. Will not daemonize
or write a pid file: systemd (or any supervisor) runs serve in the foreground.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SYSLOG_FORMAT = "listserv[%(process)d]: %(levelname)s %(name)s: %(message)s"
NOISY = ("mail.log", "apscheduler")  # a line per SMTP command / job run at INFO

# Run on SIGHUP after the templates; other parts of the server append theirs.
RELOAD_HOOKS: list = []


class OneLineFormatter(logging.Formatter):
    """One line per event: a traceback is folded onto its event's line
    (' | ' between its lines), so a log reader, grep or syslog sees one entry."""

    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(line for line in super().format(record).splitlines() if line)


def log_file_path(site) -> Path | None:
    """The [log] file, relative to the site folder; None for stderr."""
    name = site.settings.log.file
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() else site.folder / path


def configure_logging(site) -> list[logging.Handler]:
    """Set up the root logger from [log]; returns the handlers it installed."""
    settings = site.settings.log
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    path = log_file_path(site)
    if path is None:
        handlers.append(logging.StreamHandler(sys.stderr))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.WatchedFileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(OneLineFormatter(FORMAT))
    if settings.syslog:
        handlers.append(_syslog_handler(settings))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(settings.level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handlers


def _syslog_handler(settings) -> logging.Handler:
    address: str | tuple[str, int] = settings.syslog_address
    if ":" in address and not address.startswith("/"):
        host, _, port = address.rpartition(":")
        address = (host.strip("[]"), int(port))
    handler = logging.handlers.SysLogHandler(
        address=address, facility=logging.handlers.SysLogHandler.facility_names[
            settings.syslog_facility])
    handler.setFormatter(OneLineFormatter(SYSLOG_FORMAT))
    return handler


def reopen_logs() -> None:
    """Close the file handlers' streams; each reopens its file on its next line."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream:
                    handler.stream.close()
                    handler.stream = None
            finally:
                handler.release()


def notify(*fields: str) -> bool:
    """Send sd_notify fields ('READY=1', 'STATUS=...') to systemd, if it listens."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode("utf-8"))
    except OSError as error:
        log.warning("could not tell systemd %s: %s", fields[0], error)
        return False
    return True


def reloading() -> bool:
    """RELOADING=1 with the monotonic time, as systemd's notify-reload wants."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


async def reload(site, templates_check) -> None:
    """What SIGHUP does: reopen the log file, check and activate the templates
    (`templates_check(site)`), then run RELOAD_HOOKS. A failing step is logged
    and the others still run; the server keeps serving throughout."""
    from listserv.mail.templates import environment

    reloading()
    reopen_logs()
    done = []
    try:
        await templates_check(site)
        environment.cache_clear()  # the next rendering reads the active files afresh
        done.append("templates")
    except Exception as error:
        log.error("reload: templates failed: %s: %s", type(error).__name__, error)
    for hook in list(RELOAD_HOOKS):
        try:
            what = await hook(site)
            done.append(what or getattr(hook, "__name__", "hook"))
        except Exception as error:
            log.error("reload: %s failed: %s: %s", getattr(hook, "__name__", hook),
                      type(error).__name__, error)
    log.info("reloaded on SIGHUP: %s", ", ".join(done) or "nothing")
    notify("READY=1", "STATUS=Serving (reloaded)")
