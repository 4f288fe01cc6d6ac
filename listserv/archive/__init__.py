"""Forum archives, the forum directory and the initiatives bank.

What was said in a forum, kept for those who come later: `keep.py` takes
each distributed post into the store (text, sanitised HTML, attachments,
its thread) when the forum's archive policy allows; `pages.py` writes the
static web pages from the store (month index, threads, posts, Atom feeds),
`bank.py` the directory of forums and the initiatives bank; `search.py`
is the full-text index; `retrieval.py` answers `index`, `get` and `search`
by email; `serving.py` is what the web listener needs to serve the folder
safely; `stage.py` runs all of it in `listserv serve`.
"""
