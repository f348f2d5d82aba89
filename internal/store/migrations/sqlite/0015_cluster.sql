-- The servers of a cluster and who owns what (internal/cluster). A node
-- row is what a server last said of itself in its heartbeat (every 2 s);
-- a server whose heartbeat is older than the dead timeout (10 s) is dead.
-- A lease row gives one workload ("function/NAME", "service/NAME") to one
-- node until expires_at; epoch grows at each change of holder and is the
-- fencing token a forwarded request carries. A released lease keeps its
-- row with holder '' so that its epoch never goes back.
CREATE TABLE nodes (
	name         TEXT    NOT NULL PRIMARY KEY,
	address      TEXT    NOT NULL, -- base URL the other servers reach it at
	region       TEXT    NOT NULL,
	version      TEXT    NOT NULL,
	started_at   INTEGER NOT NULL, -- unix nanoseconds
	heartbeat_at INTEGER NOT NULL, -- unix nanoseconds
	instances    INTEGER NOT NULL,
	replicas     INTEGER NOT NULL,
	state        TEXT    NOT NULL, -- 'ready', 'unready: REASON', 'stopping'
	incarnation  TEXT    NOT NULL  -- random ID of the server's run that wrote the row
) WITHOUT ROWID;

CREATE TABLE leases (
	name       TEXT    NOT NULL PRIMARY KEY, -- 'function/NAME', 'service/NAME'
	holder     TEXT    NOT NULL,             -- a node's name; '' when released
	epoch      INTEGER NOT NULL,             -- 1 at the first holder, +1 at each new one
	expires_at INTEGER NOT NULL              -- unix nanoseconds; free from then on
) WITHOUT ROWID;
CREATE INDEX leases_holder ON leases (holder);
