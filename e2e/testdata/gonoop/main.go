// Command gonoop is the no-op aws-lambda-go function the benchmarks and
// scaling tests use: it answers {"ok":true}.
package main

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, ev json.RawMessage) (map[string]bool, error) {
		return map[string]bool{"ok": true}, nil
	})
}
