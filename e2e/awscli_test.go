package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// TestAWSCLI runs testdata/awscli.sh: the real AWS CLI (and boto3 for the
// 200 calls that check an alias's split) against a real server, signed
// with a key from `stratus keys create`. Each step of the script checks
// the JSON the CLI prints.
func TestAWSCLI(t *testing.T) {
	needTool(t, "aws")
	needTool(t, "python3")
	needTool(t, "curl")
	if out, err := exec.Command("python3", "-c", "import boto3").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("boto3 is not installed (it comes with the AWS CLI's pip install): %v\n%s", err, out)
		}
		t.Skipf("boto3 is not installed: %v", err)
	}
	s := startServer(t)
	key := decode[v1.AccessKey](t, []byte(s.mustCLI("keys", "create", "--description", "e2e aws cli", "-o", "json")))
	if key.AccessKeyID == "" || key.SecretAccessKey == "" {
		t.Fatalf("keys create printed %+v", key)
	}
	const topic = "cli-failures"
	s.mustCLI("topic", "create", topic)

	script, err := filepath.Abs(filepath.Join("testdata", "awscli.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	// The machine's own AWS settings (profiles, session tokens) stay out.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"ENDPOINT="+s.URL, "WORK="+t.TempDir(), "TOPIC="+topic,
		"AWS_ACCESS_KEY_ID="+key.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+key.SecretAccessKey,
		"AWS_DEFAULT_REGION=eu-west-3",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("awscli.sh took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("awscli.sh: %v\nserver log:\n%s", err, s.Stderr())
	}
	if !strings.Contains(string(out), "\n== ok (") {
		t.Fatalf("awscli.sh did not finish")
	}
}
