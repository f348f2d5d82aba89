// Command lognoop is the no-op aws-lambda-go function that logs: like
// e2e/testdata/gonoop it answers {"ok":true}, and it logs one line per
// call, as the Python and Node handlers of the coldmatrix section do. The
// bench's warm section runs it beside the no-op; coldmatrix runs it as its
// provided function.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, ev json.RawMessage) (map[string]bool, error) {
		fmt.Println("invoked")
		return map[string]bool{"ok": true}, nil
	})
}
