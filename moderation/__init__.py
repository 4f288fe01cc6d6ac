"""Moderation: the hold queue, facilitators' decisions, notices and reminders."""
