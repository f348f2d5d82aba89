-- The console's sign-in sessions. A session is known by a hash of its
-- cookie's value (HMAC-SHA-256 under the server's token, see
-- internal/console): the database never holds a value that would sign
-- anyone in. A session ends at expires_at; expired rows are refused, and
-- deleted at the next sign-in (or by DeleteExpiredSessions).
CREATE TABLE sessions (
	id_hash    BLOB    NOT NULL PRIMARY KEY, -- the hash of the cookie's value, 32 bytes
	created_at INTEGER NOT NULL,             -- unix nanoseconds
	expires_at INTEGER NOT NULL              -- unix nanoseconds
) WITHOUT ROWID;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
