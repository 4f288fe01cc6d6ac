"""The moderation/ tests: their helpers (facilitation.py) live in this folder.

The folder goes at the end of sys.path, so that `from conftest import ...`
elsewhere still finds the suite's own tests/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))
