-- 10: archives (written by listserv/archive/): each forum's archive policy
-- (public: web and email to anyone; members: email to members only; none),
-- whether the archive stage has looked at each distributed post, what is
-- kept of each archived post (text, sanitised HTML, attachments, its
-- thread), the pages still to be written, and the full-text index of
-- archived posts (rowid = post id) and accepted initiatives (rowid = -id).
ALTER TABLE forums ADD COLUMN archive TEXT NOT NULL DEFAULT 'members';
UPDATE forums SET archive = 'public' WHERE subscription = 'open';
ALTER TABLE posts ADD COLUMN archive_status TEXT;
CREATE INDEX posts_archive_due ON posts (status, archive_status, id);
CREATE TABLE archive_posts (
    post_id INTEGER PRIMARY KEY REFERENCES posts(id),
    forum_id INTEGER NOT NULL REFERENCES forums(id),
    header_id TEXT NOT NULL,
    parent_id INTEGER,
    thread_id INTEGER NOT NULL,
    depth INTEGER NOT NULL DEFAULT 0,
    topic TEXT NOT NULL DEFAULT '',
    month TEXT NOT NULL,
    date TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    html TEXT NOT NULL DEFAULT '',
    attachments INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'kept'
);
CREATE INDEX archive_posts_month ON archive_posts (forum_id, month, date, post_id);
CREATE INDEX archive_posts_thread ON archive_posts (thread_id, date, post_id);
CREATE INDEX archive_posts_header ON archive_posts (forum_id, header_id);
CREATE INDEX archive_posts_topic ON archive_posts (forum_id, topic, date);
CREATE TABLE archive_attachments (
    post_id INTEGER NOT NULL REFERENCES archive_posts(post_id),
    number INTEGER NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (post_id, number)
);
CREATE TABLE archive_dirty (
    forum_id INTEGER NOT NULL,
    what TEXT NOT NULL,
    gen INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (forum_id, what)
);
CREATE VIRTUAL TABLE archive_search USING fts5(subject, body, forum UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2');
