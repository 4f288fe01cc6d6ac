"""Where the shipped templates and default configuration are.

Installed, they sit inside the package (listserv/shipped/...); in a source
checkout or an editable install, at the top of the repository. Reads nothing
else, writes nothing.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # listserv/


def shipped_dir(name: str) -> Path:
    """The folder of shipped files called `name` ("templates" or "config")."""
    for candidate in (_PACKAGE / "shipped" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the shipped '{name}' folder is missing from this installation")
