-- See ../sqlite/0006_names.sql.
CREATE TABLE names (
	name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('function', 'service'))
);

INSERT INTO names (name, kind) SELECT name, 'function' FROM functions;
INSERT INTO names (name, kind) SELECT name, 'service' FROM services ON CONFLICT (name) DO NOTHING;
