-- See ../sqlite/0013_series.sql.
CREATE TABLE series_samples (
	kind TEXT COLLATE "C" NOT NULL, -- 'function', 'service' or 'sampler'
	name TEXT COLLATE "C" NOT NULL,
	at   BIGINT           NOT NULL, -- unix nanoseconds of the sample
	data BYTEA            NOT NULL,
	PRIMARY KEY (at, kind, name) -- time first: every workload's, and pruning
);
CREATE INDEX series_samples_workload ON series_samples (kind, name, at);

CREATE TABLE series_rollups (
	step BIGINT           NOT NULL, -- the period's length in seconds: 60, 600 or 3600
	kind TEXT COLLATE "C" NOT NULL,
	name TEXT COLLATE "C" NOT NULL,
	at   BIGINT           NOT NULL, -- unix nanoseconds of the period's start
	data BYTEA            NOT NULL,
	PRIMARY KEY (step, at, kind, name) -- time first: every workload's, and pruning
);
CREATE INDEX series_rollups_workload ON series_rollups (step, kind, name, at);
