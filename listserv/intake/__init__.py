"""Intake: the SMTP/LMTP edge and the pipeline after it.

`smtp` decides at RCPT, stores the raw bytes at DATA and answers 250 only
after the commit; `pipeline` takes each received message once, per
recipient: posts go through `policy` (distribute, hold, refuse), mail to
-request/-join/-leave/-confirm goes to `commands` and `subscriptions`.
Reads and writes `messages`, `posts`, `members` (joining and leaving) and
`tokens`; hands posts on to moderation (holds) and delivery (distribution).
Will not speak SMTP to other servers: delivery does.
"""
