-- See ../sqlite/0002_async.sql.
CREATE TABLE async_invocations (
	request_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	function      TEXT COLLATE "C" NOT NULL,
	state         TEXT COLLATE "C" NOT NULL,
	attempt       BIGINT           NOT NULL,
	enqueued_at   BIGINT           NOT NULL, -- unix nanoseconds
	updated_at    BIGINT           NOT NULL, -- unix nanoseconds
	error_type    TEXT COLLATE "C" NOT NULL,
	error_message TEXT COLLATE "C" NOT NULL
);
CREATE INDEX async_invocations_function_updated ON async_invocations (function, updated_at);
