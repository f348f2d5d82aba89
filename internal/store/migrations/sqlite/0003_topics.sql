-- Topics and their subscriptions. The events themselves live in
-- JetStream; these rows say which topics exist and who receives what.
CREATE TABLE topics (
	name       TEXT    NOT NULL PRIMARY KEY,
	created_at INTEGER NOT NULL -- unix nanoseconds
) WITHOUT ROWID;

CREATE TABLE subscriptions (
	id         TEXT    NOT NULL PRIMARY KEY,
	topic      TEXT    NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
	function   TEXT    NOT NULL, -- empty for a URL subscriber
	url        TEXT    NOT NULL, -- empty for a function subscriber
	filter     TEXT    NOT NULL, -- "", "type=...", "source-prefix=..."
	batch      INTEGER NOT NULL,
	created_at INTEGER NOT NULL  -- unix nanoseconds
) WITHOUT ROWID;
CREATE INDEX subscriptions_topic ON subscriptions (topic);
