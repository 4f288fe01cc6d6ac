"""Delivery: everything the site sends, from the queue to other mail servers.

`queue` is the front door (bodies stored once, `deliveries` rows per SMTP
transaction); `distribution` turns an accepted post into members' copies and
`notify` queues the site's own mail from templates; `engine` claims due
rows, hands them to `handover` (SMTP in a child process, or in `serve`)
over `smtpout`'s kept-open connections, and settles the outcomes through
`rows`; `bounces` records permanent failures and reads the reports that
come back. Writes `bodies`, `deliveries` and `bounces`. Will not decide who
may post or what a post says: intake and moderation did that before.
"""
