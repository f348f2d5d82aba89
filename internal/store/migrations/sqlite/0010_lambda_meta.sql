-- What the Lambda API keeps of a function besides its versions: its URL
-- configuration and its tags, which go with their function (ON DELETE
-- CASCADE). A function URL's auth is its function's auth mode; the row
-- says that the URL configuration exists, when it was made and changed,
-- and what else it was given. IF NOT EXISTS: the tests that take a
-- database back to an older schema keep these tables.
CREATE TABLE IF NOT EXISTS function_urls (
	function    TEXT    NOT NULL PRIMARY KEY REFERENCES functions (name) ON DELETE CASCADE,
	cors        TEXT    NOT NULL, -- Lambda's Cors object as JSON, '' for none
	invoke_mode TEXT    NOT NULL, -- 'BUFFERED'
	created_at  INTEGER NOT NULL, -- unix nanoseconds
	updated_at  INTEGER NOT NULL  -- unix nanoseconds
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS function_tags (
	function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
	key      TEXT NOT NULL,
	value    TEXT NOT NULL,
	PRIMARY KEY (function, key)
) WITHOUT ROWID;
