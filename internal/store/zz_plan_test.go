package store

import (
	"context"
	"testing"
)

func TestZZPlans(t *testing.T) {
	s, _ := openTest(t)
	for _, q := range []string{
		selectFunction + ` ORDER BY f.name`,
		selectFunction + ` WHERE f.name = 'x'`,
		`SELECT request_id FROM invocations WHERE function = 'f' AND start >= 5 ORDER BY start DESC, id DESC LIMIT 100`,
		`SELECT request_id FROM invocations WHERE function = 'f' AND request_id = 'r' ORDER BY start DESC, id DESC LIMIT 100`,
		`SELECT id FROM logs WHERE function = 'f' AND id > 5 AND time >= 3 ORDER BY id LIMIT 100`,
		`SELECT id FROM logs WHERE function = 'f' AND request_id = 'r' ORDER BY id LIMIT 100`,
		`SELECT start, id FROM invocations WHERE function = 'f' ORDER BY start DESC, id DESC LIMIT 1 OFFSET 5`,
		`DELETE FROM invocations WHERE function = 'f' AND start <= 5 AND (start < 5 OR id <= 5)`,
		`DELETE FROM logs WHERE function = 'f' AND id <= 5`,
		`SELECT id FROM logs WHERE function = 'f' AND time >= 5 ORDER BY id LIMIT 1`,
		`WITH RECURSIVE f(name) AS (SELECT MIN(function) FROM logs UNION ALL SELECT (SELECT MIN(function) FROM logs WHERE function > f.name) FROM f WHERE f.name IS NOT NULL) SELECT name FROM f WHERE name IS NOT NULL`,
		`SELECT DISTINCT code_sha FROM versions`,
	} {
		rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(q)
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			t.Log("   ", detail)
		}
		rows.Close()
	}
}
