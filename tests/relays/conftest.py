"""The relays/ tests import their helpers (relaykit) from this folder.

Appended, not prepended, to sys.path: `import conftest` elsewhere must still
find the suite's own tests/conftest.py first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))
