"""Where SMTP transactions run: in the server's process, or in one of their own.

The delivery engine (`engine.py`) asks a handover for one transaction at a
time (`transact`): a message body (by id, with the recipient's own header
lines to put before it), a sender and the recipients of one destination; it
gets a `smtpout.Handover` back, or `Unavailable`.

`Local` runs the transaction on the engine's own event loop (`smtpout.Pool`).
`Remote` runs it in a child process (`python -m listserv.delivery.handover`) that has
its own interpreter and event loop. Handing mail over costs more Python per
recipient than anything else the server does; in one process it shares the
interpreter lock with intake, the pipeline and the store's writer, so on a
machine with more than one core the child lets the rest of the server run
beside the handover instead of between its steps.

The child reads and writes no database and no files; it only speaks SMTP. It
is told everything over a socket pair in length-prefixed pickled frames
(parent and child are the same program, so the frames are trusted):

    parent -> child  ("signer", Signer)     DKIM keys for the copies to sign (or None)
                     ("body", id, bytes)    keep this body until told to forget it
                     ("forget", id)
                     ("send", job, destination, cap, sender, recipients, id, prefix, sign)
                     ("cancel", job)        abandon that transaction
                     ("prune",)             close connections idle too long
    child -> parent  ("done", job, Handover)
                     ("unavailable", job, why)
                     ("skipped", job, why)  not tried: its destination just failed
                     ("error", job, why)    a failure of its own (the rows are retried)

The child runs at most `concurrency` transactions at once and at most `cap`
(given with each job) per destination; the parent may hand it more (`AHEAD`
per connection), which wait in the child in the order they came. So when a
transaction ends, the connection's next one starts at once, without waiting
for the parent to hear of it and answer. When a destination fails, the jobs
waiting for it are handed back as skipped rather than tried again.

A personal copy (its own header lines in `prefix`) is DKIM-signed where it is
put together, here at hand-over time: in the child, on its own core, when
there is one (`sign`); a body that is the same for every copy comes already
signed once.

The parent decides which bodies the child keeps (at most `BODY_BYTES`), so
each body crosses the socket once however many transactions carry it. The
child dies with the parent: on Linux the kernel kills it (PR_SET_PDEATHSIG);
elsewhere it stops when the socket closes. If the child dies, transactions in
flight end as `Unavailable` (their rows are retried, as after any dropped
connection) and the next transaction starts a new child.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections import Counter, OrderedDict, deque
from itertools import count
from typing import TYPE_CHECKING

from listserv.delivery.smarthost import Secure
from listserv.delivery.smtpout import Handover, Pool, Unavailable

if TYPE_CHECKING:  # the child imports dkimpy only when it is sent keys to sign with
    from listserv.delivery.dkim import Signer

log = logging.getLogger(__name__)

BODY_BYTES = 8 * 1024 * 1024  # bodies the child keeps at most (its memory levels off)
AHEAD = 1  # transactions waiting in the child per connection, beside the running one
_LENGTH = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1


def _frame(message: tuple) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple | None:
    """The next frame, or None when the other side has closed the socket."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        return pickle.loads(await reader.readexactly(_LENGTH.unpack(head)[0]))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class Skipped(Unavailable):
    """Not tried: another transaction to the same destination has just failed."""


class Local:
    """Transactions on the caller's own event loop."""

    ahead = 0  # the caller starts each transaction itself

    def __init__(self, helo: str, timeout: float, concurrency: int,
                 secure: dict[str, Secure] | None = None, signer: Signer | None = None):
        self.pool = Pool(helo, timeout, secure)
        self.signer = signer

    async def transact(self, destination: str, cap: int, sender: str, recipients: list[str],
                       body_id: int, prefix: bytes, raw: bytes, sign: bool = False) -> Handover:
        return await self.pool.transact(destination, sender, recipients,
                                        personal_copy(self.signer if sign else None, prefix, raw))

    def prune(self) -> None:
        self.pool.prune()

    async def close(self) -> None:
        await self.pool.close()


class Remote:
    """Transactions in a child process, started when first needed."""

    ahead = AHEAD

    def __init__(self, helo: str, timeout: float, concurrency: int,
                 secure: dict[str, Secure] | None = None, signer: Signer | None = None):
        self.helo, self.timeout, self.concurrency = helo, timeout, concurrency
        self.secure = secure or {}  # paths, never a password, go on the command line
        self.signer = signer
        self.proc: subprocess.Popen | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task | None = None
        self.jobs: dict[int, asyncio.Future] = {}
        self.numbers = count(1)
        self.sent: OrderedDict[int, int] = OrderedDict()  # bodies the child has: id -> size
        self.sent_bytes = 0
        self.starting = asyncio.Lock()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "listserv.delivery.handover", str(theirs.fileno()),
                 str(os.getpid()), self.helo, repr(self.timeout), str(self.concurrency),
                 json.dumps({d: v.as_dict() for d, v in self.secure.items()})],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as error:
            ours.close()
            raise Unavailable(f"cannot start the handover process: {error}") from None
        finally:
            theirs.close()
        reader, self.writer = await asyncio.open_connection(sock=ours)
        self._send(("signer", self.signer))
        self.sent.clear()
        self.sent_bytes = 0
        self.reader_task = asyncio.create_task(self._read(reader, self.writer, self.proc),
                                               name="handover-replies")

    async def _read(self, reader, writer, proc) -> None:
        while (message := await _read_frame(reader)) is not None:
            kind, job, value = message
            future = self.jobs.pop(job, None)
            if future is None or future.done():
                continue
            if kind == "done":
                future.set_result(value)
            elif kind == "unavailable":
                future.set_exception(Unavailable(value))
            elif kind == "skipped":
                future.set_exception(Skipped(value))
            else:
                future.set_exception(RuntimeError(f"in the handover process: {value}"))
        # The child is gone: what it was doing is in doubt, like a dropped connection.
        # Its jobs fail before anything is awaited: a new child may start meanwhile,
        # and the jobs it gets are not these.
        if self.writer is writer:
            self.writer = None
        writer.close()
        orphans, self.jobs = self.jobs, {}
        for future in orphans.values():
            if not future.done():
                future.set_exception(Unavailable("the handover process ended during the "
                                                 "transaction"))
        code = await asyncio.to_thread(proc.wait)
        if code != 0:
            log.warning("the handover process ended (exit status %s); starting another "
                        "when mail is next due", code)

    def _send(self, message: tuple) -> None:
        self.writer.write(_frame(message))

    def _keep(self, body_id: int, raw: bytes) -> None:
        """Make sure the child has the body, forgetting the oldest over the budget."""
        if body_id in self.sent:
            self.sent.move_to_end(body_id)
            return
        self._send(("body", body_id, raw))
        self.sent[body_id] = len(raw)
        self.sent_bytes += len(raw)
        while self.sent_bytes > BODY_BYTES and len(self.sent) > 1:
            old, size = self.sent.popitem(last=False)
            self.sent_bytes -= size
            self._send(("forget", old))

    async def transact(self, destination: str, cap: int, sender: str, recipients: list[str],
                       body_id: int, prefix: bytes, raw: bytes, sign: bool = False) -> Handover:
        async with self.starting:  # one child, however many transactions want it
            if self.writer is None:
                await self._start()
        job = next(self.numbers)
        future = asyncio.get_running_loop().create_future()
        self.jobs[job] = future
        self._keep(body_id, raw)
        self._send(("send", job, destination, cap, sender, recipients, body_id, prefix, sign))
        try:
            return await future
        except asyncio.CancelledError:
            if self.writer is not None and self.jobs.pop(job, None) is not None:
                self._send(("cancel", job))
            raise

    def prune(self) -> None:
        if self.writer is not None:
            self._send(("prune",))

    async def close(self, grace: float = 5.0) -> None:
        """Let the child say QUIT to its servers and end; kill it if it lingers."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.reader_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.reader_task), grace)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.reader_task


def personal_copy(signer: Signer | None, prefix: bytes, raw: bytes) -> bytes:
    """A copy's own header lines on top of the shared body, DKIM-signed when a
    signer is given (the signature covers those lines: RFC 8058 §4)."""
    data = prefix + raw
    return signer.sign(data) + data if signer is not None else data


# -- the child ---------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the closed socket tells us instead
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


async def _child(fd: int, helo: str, timeout: float, concurrency: int,
                 secure: dict[str, Secure] | None = None) -> None:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    pool = Pool(helo, timeout, secure)
    bodies: dict[int, bytes] = {}
    signer: Signer | None = None
    running: dict[int, asyncio.Task] = {}
    active: Counter = Counter()  # running transactions per destination
    waiting: deque[tuple] = deque()  # (job, destination, cap, sender, recipients, id,
    #                                    prefix, sign)

    def pump() -> None:
        """Start waiting jobs, in order, as far as the limits allow."""
        held: deque[tuple] = deque()
        while waiting and len(running) < concurrency:
            item = waiting.popleft()
            job, destination, cap = item[:3]
            if active[destination] < cap:
                active[destination] += 1
                running[job] = asyncio.create_task(send(*item))
            else:
                held.append(item)
        held.extend(waiting)
        waiting.clear()
        waiting.extend(held)

    def skip(destination: str, why: str) -> None:
        kept = [item for item in waiting if item[1] != destination]
        for item in waiting:
            if item[1] == destination:
                writer.write(_frame(("skipped", item[0], why)))
        waiting.clear()
        waiting.extend(kept)

    async def send(job, destination, cap, sender, recipients, body_id, prefix, sign) -> None:
        try:
            raw = bodies.get(body_id)
            if raw is None:
                reply = ("error", job, f"body {body_id} was not handed over first")
            else:
                data = personal_copy(signer if sign else None, prefix, raw)
                try:
                    reply = ("done", job, await pool.transact(destination, sender,
                                                              recipients, data))
                except Unavailable as error:
                    reply = ("unavailable", job, str(error))
            writer.write(_frame(reply))
            if reply[0] == "unavailable" or (reply[0] == "done" and reply[2].unavailable):
                skip(destination, reply[2] if reply[0] == "unavailable"
                     else reply[2].unavailable)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reported; the parent retries the rows
            writer.write(_frame(("error", job, f"{type(error).__name__}: {error}")))
        finally:
            running.pop(job, None)
            active[destination] -= 1
            pump()

    while (message := await _read_frame(reader)) is not None:
        kind = message[0]
        if kind == "send":
            waiting.append(message[1:])
            pump()
        elif kind == "body":
            bodies[message[1]] = message[2]
        elif kind == "signer":
            signer = message[1]
        elif kind == "forget":
            bodies.pop(message[1], None)
        elif kind == "cancel":
            task = running.get(message[1])
            if task is not None:
                task.cancel()
            else:
                kept = [item for item in waiting if item[0] != message[1]]
                waiting.clear()
                waiting.extend(kept)
        elif kind == "prune":
            pool.prune()
    waiting.clear()
    for task in list(running.values()):
        task.cancel()
    if running:
        await asyncio.wait(list(running.values()))
    await pool.close()
    writer.close()


def main(argv: list[str]) -> None:
    fd, parent, helo = int(argv[0]), int(argv[1]), argv[2]
    timeout, concurrency = float(argv[3]), int(argv[4])
    secure = {d: Secure(**v) for d, v in json.loads(argv[5]).items()} if len(argv) > 5 else {}
    _die_with_parent(parent)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the parent decides
        signal.signal(signum, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_child(fd, helo, timeout, concurrency, secure))
    else:
        uvloop.run(_child(fd, helo, timeout, concurrency, secure))


if __name__ == "__main__":
    main(sys.argv[1:])
