"""Fixtures: a real site folder in tmp_path that delivers to a real sink."""

from __future__ import annotations

import compileall
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import running_sink, write_site  # noqa: E402

from listserv.site.folder import Site  # noqa: E402


def pytest_configure(config) -> None:
    """Compile the packages once, before the workers start. The suite starts
    `python -m listserv` (the CLI, and serve) hundreds of times from this
    checkout; where bytecode is not written (PYTHONDONTWRITEBYTECODE), each
    start compiled every module again, about half a second each time."""
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        root = Path(__file__).parent.parent
        for package in ("listserv", "digests", "moderation", "relays"):
            compileall.compile_dir(root / package, quiet=1)


@pytest.fixture
def sink():
    with running_sink() as caught:
        yield caught


@pytest.fixture
def site(tmp_path, sink) -> Site:
    """A site whose smarthost is the sink."""
    return Site(write_site(tmp_path / "site", sink.port))


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
