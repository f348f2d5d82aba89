-- Access keys of the Lambda API (AWS Signature Version 4). SigV4 needs the
-- secret itself, so it is not hashed: it is sealed (AES-256-GCM, nonce
-- first) under a key kept in a file of the data dir, outside the
-- database, so that the database alone reveals no secret. IF NOT EXISTS:
-- the tests that take a database back to an older schema keep this table.
CREATE TABLE IF NOT EXISTS access_keys (
	id           TEXT    NOT NULL PRIMARY KEY, -- 20 characters, "STRA" then 16 upper-case alphanumerics
	secret       BLOB    NOT NULL,             -- the sealed secret access key
	description  TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,             -- unix nanoseconds
	last_used_at INTEGER NOT NULL              -- unix nanoseconds, 0 before its first use
) WITHOUT ROWID;
