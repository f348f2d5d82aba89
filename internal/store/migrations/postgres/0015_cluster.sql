-- The servers of a cluster and who owns what (internal/cluster). A node
-- row is what a server last said of itself in its heartbeat (every 2 s);
-- a server whose heartbeat is older than the dead timeout (10 s) is dead.
-- A lease row gives one workload ("function/NAME", "service/NAME") to one
-- node until expires_at; epoch grows at each change of holder and is the
-- fencing token a forwarded request carries. A released lease keeps its
-- row with holder '' so that its epoch never goes back.
CREATE TABLE nodes (
	name         TEXT   NOT NULL PRIMARY KEY,
	address      TEXT   NOT NULL, -- base URL the other servers reach it at
	region       TEXT   NOT NULL,
	version      TEXT   NOT NULL,
	started_at   BIGINT NOT NULL, -- unix nanoseconds
	heartbeat_at BIGINT NOT NULL, -- unix nanoseconds
	instances    BIGINT NOT NULL,
	replicas     BIGINT NOT NULL,
	state        TEXT   NOT NULL, -- 'ready', 'unready: REASON', 'stopping'
	incarnation  TEXT   NOT NULL  -- random ID of the server's run that wrote the row
);

CREATE TABLE leases (
	name       TEXT   NOT NULL PRIMARY KEY, -- 'function/NAME', 'service/NAME'
	holder     TEXT   NOT NULL,             -- a node's name; '' when released
	epoch      BIGINT NOT NULL,             -- 1 at the first holder, +1 at each new one
	expires_at BIGINT NOT NULL              -- unix nanoseconds; free from then on
);
CREATE INDEX leases_holder ON leases (holder);

-- Change notifications: every row written to a table that describes a
-- workload sends 'TABLE:NAME' on the channel stratus_changes, NAME being
-- the function, service, topic or schedule the row belongs to (a
-- subscription's topic). The trigger's argument names that column.
-- PostgreSQL delivers a transaction's notifications at its commit, once
-- per distinct payload; the servers LISTEN (Store.Listen) and reload what
-- changed.
CREATE FUNCTION stratus_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	r jsonb;
BEGIN
	IF TG_OP = 'DELETE' THEN
		r := to_jsonb(OLD);
	ELSE
		r := to_jsonb(NEW);
	END IF;
	PERFORM pg_notify('stratus_changes', TG_TABLE_NAME || ':' || COALESCE(r ->> TG_ARGV[0], ''));
	RETURN NULL;
END
$$;

CREATE TRIGGER functions_notify AFTER INSERT OR UPDATE OR DELETE ON functions
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('name');
CREATE TRIGGER versions_notify AFTER INSERT OR UPDATE OR DELETE ON versions
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('function');
CREATE TRIGGER aliases_notify AFTER INSERT OR UPDATE OR DELETE ON aliases
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('function');
CREATE TRIGGER function_urls_notify AFTER INSERT OR UPDATE OR DELETE ON function_urls
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('function');
CREATE TRIGGER function_tags_notify AFTER INSERT OR UPDATE OR DELETE ON function_tags
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('function');
CREATE TRIGGER services_notify AFTER INSERT OR UPDATE OR DELETE ON services
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('name');
CREATE TRIGGER revisions_notify AFTER INSERT OR UPDATE OR DELETE ON revisions
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('service');
CREATE TRIGGER topics_notify AFTER INSERT OR UPDATE OR DELETE ON topics
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('name');
CREATE TRIGGER subscriptions_notify AFTER INSERT OR UPDATE OR DELETE ON subscriptions
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('topic');
CREATE TRIGGER schedules_notify AFTER INSERT OR UPDATE OR DELETE ON schedules
	FOR EACH ROW EXECUTE FUNCTION stratus_notify_change('name');
