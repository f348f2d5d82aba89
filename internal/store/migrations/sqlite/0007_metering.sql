-- Metering. Invocation records keep what made them, the CPU time they
-- used, the architecture they ran on and their trace ID; records stored
-- before have '' and 0.
ALTER TABLE invocations ADD COLUMN "trigger" TEXT NOT NULL DEFAULT '';
ALTER TABLE invocations ADD COLUMN cpu_ms    REAL NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN arch      TEXT NOT NULL DEFAULT '';
ALTER TABLE invocations ADD COLUMN trace_id  TEXT NOT NULL DEFAULT '';

-- One minute of one workload's use (stratus.UsageMinute), summed as it
-- arrives: functions' minutes from their invocation records, in the
-- transaction that stores the records; services' from their replicas.
-- They are history: they outlive the records (pruned sooner) and the
-- workload itself, and go only with age.
CREATE TABLE usage_minutes (
	kind            TEXT    NOT NULL, -- 'function' or 'service'
	name            TEXT    NOT NULL,
	minute          INTEGER NOT NULL, -- unix nanoseconds of the minute's start
	requests        INTEGER NOT NULL,
	errors          INTEGER NOT NULL,
	cold_starts     INTEGER NOT NULL,
	duration_ms     REAL    NOT NULL, -- summed
	max_duration_ms REAL    NOT NULL,
	billed_ms       REAL    NOT NULL,
	init_ms         REAL    NOT NULL,
	cpu_ms          REAL    NOT NULL,
	gb_seconds      REAL    NOT NULL,
	vcpu_seconds    REAL    NOT NULL,
	max_in_flight   INTEGER NOT NULL,
	replicas        REAL    NOT NULL,
	memory_mb       INTEGER NOT NULL, -- the latest reported
	vcpu            REAL    NOT NULL, -- the latest reported
	arch            TEXT    NOT NULL, -- the latest reported
	PRIMARY KEY (kind, name, minute)
) WITHOUT ROWID;
CREATE INDEX usage_minutes_minute ON usage_minutes (minute);

-- One row per life of a service's replica (stratus.ReplicaUsage); a life
-- reported again (while it runs, up to the report, then at its end)
-- replaces its row.
CREATE TABLE replica_usage (
	id         INTEGER PRIMARY KEY,
	service    TEXT    NOT NULL,
	revision   INTEGER NOT NULL,
	replica    TEXT    NOT NULL,
	start_time INTEGER NOT NULL, -- unix nanoseconds
	end_time   INTEGER NOT NULL, -- unix nanoseconds; while it runs, of the last report
	vcpu       REAL    NOT NULL,
	memory_mb  INTEGER NOT NULL,
	cpu_ms     REAL    NOT NULL,
	requests   INTEGER NOT NULL,
	arch       TEXT    NOT NULL,
	UNIQUE (service, replica, start_time)
);
CREATE INDEX replica_usage_service_end ON replica_usage (service, end_time);
CREATE INDEX replica_usage_end ON replica_usage (end_time); -- pruning
