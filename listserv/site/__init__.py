"""The site: its folder, its settings, its store, and what it holds.

`folder.Site` opens a site folder (`listserv.toml`, `data/`); `settings` reads
the TOML once into frozen dataclasses; `store` is the SQLite file, its
migrations (numbered `.sql` files in `migrations/`) and the single writer
thread every write of the server goes through; `forums` and `members` own
those tables; `init` makes a new site folder. Reads and writes the site
folder and the database. Will not read or send mail: the other stages do,
through the store.
"""
