"""The project's exceptions: str(error) is the one line a user sees."""


class ListservError(Exception):
    """Anything a user can be told about in one line."""


class ConfigError(ListservError):
    """The site's configuration is wrong; the message names file, key and fix."""


class NotFound(ListservError):
    """A forum, member, hold or other named thing does not exist."""


class AlreadyExists(ListservError):
    """Creating something that is there already."""


class SiteLocked(ListservError):
    """Another `listserv serve` holds the site."""


class TokenError(ListservError):
    """A confirmation or decision token is unknown, used or expired."""


class MessageError(ListservError):
    """A message cannot be parsed or rendered safely; it is held with this reason."""
