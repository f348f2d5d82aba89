-- See ../sqlite/0004_schedules.sql.
CREATE TABLE schedules (
	name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	function      TEXT COLLATE "C" NOT NULL,
	expression    TEXT COLLATE "C" NOT NULL, -- cron(...), rate(...) or at(...)
	timezone      TEXT COLLATE "C" NOT NULL, -- IANA name, "" for UTC
	data          TEXT COLLATE "C" NOT NULL, -- JSON detail of each event, "" for {}
	created_at    BIGINT           NOT NULL, -- unix nanoseconds
	last_fired_at BIGINT           NOT NULL  -- unix nanoseconds, 0 before the first firing
);
