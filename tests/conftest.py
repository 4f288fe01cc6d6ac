"""Fixtures: a real site folder in tmp_path that delivers to a real sink."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import running_sink  # noqa: E402

from listserv.site import Site  # noqa: E402

DOMAIN = "lists.example.org"


def write_site(folder: Path, smarthost_port: int | None = None, extra: str = "") -> Path:
    """A minimal site folder; `extra` is appended TOML (whole sections)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "charter").mkdir(exist_ok=True)
    delivery = f'smarthost = "127.0.0.1:{smarthost_port}"\n' if smarthost_port else ""
    (folder / "listserv.toml").write_text(
        f'[site]\ndomain = "{DOMAIN}"\nname = "Test alliance"\n'
        f'secretariat = ["secretariat@example.org"]\n'
        f'[delivery]\n{delivery}retry_schedule = ["1s", "2s"]\ngive_up_after = "1m"\n'
        f'timeout = "10s"\n' + extra, encoding="utf-8")
    return folder


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
