-- See ../sqlite/0010_lambda_meta.sql.
CREATE TABLE function_urls (
	function    TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES functions (name) ON DELETE CASCADE,
	cors        TEXT COLLATE "C" NOT NULL, -- Lambda's Cors object as JSON, '' for none
	invoke_mode TEXT COLLATE "C" NOT NULL, -- 'BUFFERED'
	created_at  BIGINT           NOT NULL, -- unix nanoseconds
	updated_at  BIGINT           NOT NULL  -- unix nanoseconds
);

CREATE TABLE function_tags (
	function TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
	key      TEXT COLLATE "C" NOT NULL,
	value    TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (function, key)
);
