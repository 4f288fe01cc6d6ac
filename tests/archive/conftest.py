"""The archive's tests: their helpers (archivekit) live in this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))  # after tests/: `conftest` stays the root one
