"""listserv: a federated mailing-list and e-forum facilitation system."""

__version__ = "0.1.0"
