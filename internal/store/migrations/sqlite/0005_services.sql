-- Services and their immutable revisions. A service row points at its
-- serving revision; a revision is stored only once it became ready, so
-- a failed deploy leaves nothing behind. Deleting a service deletes its
-- revisions.
CREATE TABLE services (
	name       TEXT    NOT NULL PRIMARY KEY,
	serving    INTEGER NOT NULL,
	created_at INTEGER NOT NULL, -- unix nanoseconds
	updated_at INTEGER NOT NULL  -- unix nanoseconds
) WITHOUT ROWID;

CREATE TABLE revisions (
	service      TEXT    NOT NULL REFERENCES services (name) ON DELETE CASCADE,
	number       INTEGER NOT NULL,
	config       TEXT    NOT NULL, -- stratus.ServiceConfig as JSON
	image_digest TEXT    NOT NULL,
	created_at   INTEGER NOT NULL, -- unix nanoseconds
	PRIMARY KEY (service, number)
) WITHOUT ROWID;
