-- One registry of route names: functions and services share the names
-- under /fn/NAME, /svc/NAME and NAME.<domain>, so a name belongs to one
-- function or one service. A deploy claims its name in the transaction
-- that records it; a service claims it before its replicas start too.
-- Removing a function or a service frees its name.
CREATE TABLE names (
	name TEXT NOT NULL PRIMARY KEY,
	kind TEXT NOT NULL CHECK (kind IN ('function', 'service'))
) WITHOUT ROWID;

-- Data dirs from before the registry: each stored function and service
-- holds its name. Should one name be both (a deploy of each could slip
-- through before), the function keeps it and the service cannot be
-- deployed again until one of them is removed.
INSERT INTO names (name, kind) SELECT name, 'function' FROM functions;
INSERT OR IGNORE INTO names (name, kind) SELECT name, 'service' FROM services;
