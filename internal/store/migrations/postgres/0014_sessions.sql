-- See ../sqlite/0014_sessions.sql.
CREATE TABLE sessions (
	id_hash    BYTEA  NOT NULL PRIMARY KEY, -- the hash of the cookie's value, 32 bytes
	created_at BIGINT NOT NULL,             -- unix nanoseconds
	expires_at BIGINT NOT NULL              -- unix nanoseconds
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
