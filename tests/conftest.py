"""Fixtures: a real site folder in tmp_path that delivers to a real sink."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import running_sink, write_site  # noqa: E402

from listserv.site.folder import Site  # noqa: E402


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
