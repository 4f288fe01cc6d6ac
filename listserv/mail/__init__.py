"""Mail formats: reading mail we did not write, and writing mail of our own, safely.

`message` parses raw bytes (guarded: a message the `email` package chokes on
becomes an error to hold, never a crash) and composes our own messages with
safe headers; `addresses` checks and classifies addresses at our domain;
`tokens` makes and spends single-use tokens and signed links; `templates`
renders Jinja2 templates in the sandbox, by language. Pure, apart from the
`tokens` table and the template files they read. Will not queue or send
anything: that is delivery's job.
"""
