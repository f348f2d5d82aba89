-- See ../sqlite/0008_versions.sql.
ALTER TABLE versions ADD COLUMN number      BIGINT           NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN description TEXT COLLATE "C" NOT NULL DEFAULT '';
CREATE UNIQUE INDEX versions_number ON versions (function, number) WHERE number > 0;
ALTER TABLE functions ADD COLUMN published BIGINT NOT NULL DEFAULT 0;

CREATE TABLE aliases (
	function    TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
	name        TEXT COLLATE "C" NOT NULL,
	description TEXT COLLATE "C" NOT NULL,
	version     TEXT COLLATE "C" NOT NULL, -- '$LATEST' or a published number
	weights     TEXT COLLATE "C" NOT NULL, -- JSON object: version -> share; '' for none
	revision_id TEXT COLLATE "C" NOT NULL,
	created_at  BIGINT           NOT NULL, -- unix nanoseconds
	updated_at  BIGINT           NOT NULL, -- unix nanoseconds
	PRIMARY KEY (function, name)
);

ALTER TABLE invocations ADD COLUMN qualifier TEXT COLLATE "C" NOT NULL DEFAULT '';
