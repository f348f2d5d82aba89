-- The state of each asynchronous invocation (queued, running, retrying,
-- succeeded, failed). The events themselves live in JetStream; this is
-- what GET /v1/invocations/ID shows.
CREATE TABLE async_invocations (
	request_id    TEXT    NOT NULL PRIMARY KEY,
	function      TEXT    NOT NULL,
	state         TEXT    NOT NULL,
	attempt       INTEGER NOT NULL,
	enqueued_at   INTEGER NOT NULL, -- unix nanoseconds
	updated_at    INTEGER NOT NULL, -- unix nanoseconds
	error_type    TEXT    NOT NULL,
	error_message TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX async_invocations_function_updated ON async_invocations (function, updated_at);
