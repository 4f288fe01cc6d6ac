"""The `listserv` command line: the root group (`main`) and its command modules.

Commands are thin: parse, call one core function, print. Data goes to
stdout (`--json` for JSON), messages to stderr, errors are one line and exit
status 1. With `serve.py`, this is the one place inside `listserv/` that
imports `moderation/`, `digests/` and `relays/`, to wire their commands in.
Will not hold logic of its own beyond presenting what the core returns.
"""
