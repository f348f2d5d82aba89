-- The time series of the console's charts (internal/series): what each
-- workload did in each sample of the server's metrics (every 5 s, kept
-- 2 hours) and in each period of a minute, ten minutes and an hour (kept
-- 8 days). data is the span's point (counts, a histogram of durations,
-- gauges' maxima) in internal/series' binary encoding, read only by it. A
-- row of kind 'sampler' says that the server sampled then: a workload
-- without a row did nothing (idle workloads store none). Rows are history
-- of a name: they outlive a removed workload and go only with age.
CREATE TABLE series_samples (
	kind TEXT    NOT NULL, -- 'function', 'service' or 'sampler'
	name TEXT    NOT NULL,
	at   INTEGER NOT NULL, -- unix nanoseconds of the sample
	data BLOB    NOT NULL,
	PRIMARY KEY (at, kind, name) -- time first: every workload's, and pruning
) WITHOUT ROWID;
CREATE INDEX series_samples_workload ON series_samples (kind, name, at);

CREATE TABLE series_rollups (
	step INTEGER NOT NULL, -- the period's length in seconds: 60, 600 or 3600
	kind TEXT    NOT NULL,
	name TEXT    NOT NULL,
	at   INTEGER NOT NULL, -- unix nanoseconds of the period's start
	data BLOB    NOT NULL,
	PRIMARY KEY (step, at, kind, name) -- time first: every workload's, and pruning
) WITHOUT ROWID;
CREATE INDEX series_rollups_workload ON series_rollups (step, kind, name, at);
