-- See ../sqlite/0003_topics.sql.
CREATE TABLE topics (
	name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	created_at BIGINT           NOT NULL -- unix nanoseconds
);

CREATE TABLE subscriptions (
	id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	topic      TEXT COLLATE "C" NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
	function   TEXT COLLATE "C" NOT NULL, -- empty for a URL subscriber
	url        TEXT COLLATE "C" NOT NULL, -- empty for a function subscriber
	filter     TEXT COLLATE "C" NOT NULL, -- "", "type=...", "source-prefix=..."
	batch      BIGINT           NOT NULL,
	created_at BIGINT           NOT NULL  -- unix nanoseconds
);
CREATE INDEX subscriptions_topic ON subscriptions (topic);
