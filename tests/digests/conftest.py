"""The digests/ tests: their helpers (digestkit) live in this folder; `hub` is a
site with forums on the three paths and members in four languages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).parent))  # after tests/: `conftest` stays the root one

from digestkit import make_hub  # noqa: E402


@pytest.fixture
def hub(tmp_path, sink) -> Path:
    return make_hub(tmp_path, sink)
