"""Failures we foresee, told in one line; the others with their traceback.

A full disk, a database another process holds locked, a folder that cannot
be written: these are the machine's state, not a bug, and a traceback says
nothing more about them than their one line does. When every stage of
`serve` meets the same full disk at once, tracebacks only bury the line
that matters. `is_foreseen(error)` says which failures are of that kind
(looking through the chain of causes, since library errors are raised
again as ours); `log_failure` logs one line naming what failed and the
error for those, and the traceback for everything else; `OneLine` does the
same to any record logged with a traceback (a scheduler job's, say), for
the server's log handler. Reads and writes nothing.
"""

from __future__ import annotations

import errno
import logging
import sqlite3

# The machine's state: out of space or quota, read-only, unreadable, out of handles.
ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO,
                    errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                    errno.EAGAIN, errno.EBUSY})
# What SQLite says about the same states (and about another process's lock).
SQLITE = ("database is locked", "database table is locked", "disk i/o error",
          "database or disk is full", "disk is full", "unable to open database file",
          "attempt to write a readonly database", "out of memory")


def is_foreseen(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is one we expect of the
    machine (a full disk, a locked database) rather than of our code."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in ERRNOS:
            return True
        if isinstance(error, sqlite3.OperationalError):
            text = str(error).lower()
            if any(phrase in text for phrase in SQLITE):
                return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def describe(error: BaseException) -> str:
    """The error in one line: its type and its words."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def log_failure(logger: logging.Logger, error: BaseException, message: str, *args) -> None:
    """Log `message % args` at ERROR: with the error on the same line when it is
    foreseen, with its traceback when it is not."""
    if is_foreseen(error):
        logger.error(f"{message}: %s", *args, describe(error))
    else:
        logger.error(message, *args, exc_info=error)


class OneLine(logging.Filter):
    """For a log handler: a record that carries a foreseen error's traceback
    becomes its message and the error on one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_foreseen(record.exc_info[1]):
            record.msg = f"{record.getMessage()}: {describe(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
