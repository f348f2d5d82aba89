-- Published versions and aliases. A snapshot (a row of versions) that
-- was published has its number, Lambda's version number (1, 2, ... per
-- function); 0 for one never published. functions.published is the last
-- number given, so that a number is never given again, even after its
-- version was deleted.
ALTER TABLE versions ADD COLUMN number      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN description TEXT    NOT NULL DEFAULT '';
CREATE UNIQUE INDEX versions_number ON versions (function, number) WHERE number > 0;
ALTER TABLE functions ADD COLUMN published INTEGER NOT NULL DEFAULT 0;

-- An alias names $LATEST or a published version and, with weights, one
-- more published version that takes a share of its invocations.
CREATE TABLE aliases (
	function    TEXT    NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	description TEXT    NOT NULL,
	version     TEXT    NOT NULL, -- '$LATEST' or a published number
	weights     TEXT    NOT NULL, -- JSON object: version -> share; '' for none
	revision_id TEXT    NOT NULL,
	created_at  INTEGER NOT NULL, -- unix nanoseconds
	updated_at  INTEGER NOT NULL, -- unix nanoseconds
	PRIMARY KEY (function, name)
) WITHOUT ROWID;

-- What an invocation ran as: '$LATEST' or a published version's number;
-- '' for records stored before.
ALTER TABLE invocations ADD COLUMN qualifier TEXT NOT NULL DEFAULT '';
