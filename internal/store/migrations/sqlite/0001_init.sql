-- Functions and their immutable versions. A function row points at its
-- head version; deleting a function deletes its versions.
CREATE TABLE functions (
	name       TEXT    NOT NULL PRIMARY KEY,
	head       INTEGER NOT NULL,
	created_at INTEGER NOT NULL, -- unix nanoseconds
	updated_at INTEGER NOT NULL  -- unix nanoseconds
) WITHOUT ROWID;

CREATE TABLE versions (
	function   TEXT    NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
	version    INTEGER NOT NULL,
	config     TEXT    NOT NULL, -- stratus.FunctionConfig as JSON
	code_sha   TEXT    NOT NULL,
	code_size  INTEGER NOT NULL,
	created_at INTEGER NOT NULL, -- unix nanoseconds
	PRIMARY KEY (function, version)
) WITHOUT ROWID;

-- Invocation records and log lines name their function but do not
-- reference it: they arrive asynchronously and may outlive a deleted
-- function by a moment. DeleteFunction and Prune remove them.
CREATE TABLE invocations (
	id               INTEGER PRIMARY KEY,
	function         TEXT    NOT NULL,
	request_id       TEXT    NOT NULL,
	version          INTEGER NOT NULL,
	start            INTEGER NOT NULL, -- unix nanoseconds
	duration_ms      REAL    NOT NULL,
	billed_ms        INTEGER NOT NULL,
	memory_mb        INTEGER NOT NULL,
	max_memory_mb    INTEGER NOT NULL,
	init_duration_ms REAL    NOT NULL,
	cold             INTEGER NOT NULL,
	outcome          TEXT    NOT NULL,
	error_type       TEXT    NOT NULL,
	instance         TEXT    NOT NULL
);
CREATE INDEX invocations_function_start ON invocations (function, start);
CREATE INDEX invocations_request_id ON invocations (request_id);

-- AUTOINCREMENT keeps log IDs increasing even after the newest lines are
-- deleted, so a reader following with AfterID never misses a line.
CREATE TABLE logs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	function   TEXT    NOT NULL,
	time       INTEGER NOT NULL, -- unix nanoseconds
	request_id TEXT    NOT NULL,
	instance   TEXT    NOT NULL,
	stream     TEXT    NOT NULL,
	text       TEXT    NOT NULL
);
CREATE INDEX logs_function_id ON logs (function, id);
CREATE INDEX logs_request_id ON logs (request_id);
