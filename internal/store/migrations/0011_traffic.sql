-- A service's traffic split: a JSON array of stratus.TrafficTarget, '[]'
-- when none is set (the latest revision then takes every request). The
-- revisions it names stay stored with their service, as every revision
-- does.
ALTER TABLE services ADD COLUMN traffic TEXT NOT NULL DEFAULT '[]';
