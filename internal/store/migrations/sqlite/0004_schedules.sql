-- Schedules: each firing is an async invocation of a function.
CREATE TABLE schedules (
	name          TEXT    NOT NULL PRIMARY KEY,
	function      TEXT    NOT NULL,
	expression    TEXT    NOT NULL, -- cron(...), rate(...) or at(...)
	timezone      TEXT    NOT NULL, -- IANA name, "" for UTC
	data          TEXT    NOT NULL, -- JSON detail of each event, "" for {}
	created_at    INTEGER NOT NULL, -- unix nanoseconds
	last_fired_at INTEGER NOT NULL  -- unix nanoseconds, 0 before the first firing
) WITHOUT ROWID;
