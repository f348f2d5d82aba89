-- See ../sqlite/0009_access_keys.sql.
CREATE TABLE access_keys (
	id           TEXT COLLATE "C" NOT NULL PRIMARY KEY, -- 20 characters, "STRA" then 16 upper-case alphanumerics
	secret       BYTEA            NOT NULL,             -- the sealed secret access key
	description  TEXT COLLATE "C" NOT NULL,
	created_at   BIGINT           NOT NULL,             -- unix nanoseconds
	last_used_at BIGINT           NOT NULL              -- unix nanoseconds, 0 before its first use
);
