"""The intake/ tests: test_commands borrows test_subscriptions' letters and
helpers, so this folder is on the import path (after tests/, as in digests/)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))
