package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratus-run/stratus/client"
)

// Token is the bearer token of every server a bench starts.
const Token = "bench-token-0123456789"

// Server is a running `stratus server` a bench started.
type Server struct {
	*Proc
	Bin    string
	Addr   string // host:port
	URL    string // http://host:port
	Data   string // its data dir, absolute
	Client *client.Client
}

// StartServer starts bin as `stratus server` on a free loopback port with
// the data dir data and the token Token, its output appended to logPath,
// and the extra flags args (the sandbox, limits ...); env is added to the
// bench's environment, where STRATUS_TOKEN and STRATUS_SERVER are
// cleared. It returns once the server says where it listens, within 30 s.
func StartServer(ctx context.Context, bin, data, logPath string, args []string, env ...string) (*Server, error) {
	data, err := filepath.Abs(data)
	if err != nil {
		return nil, err
	}
	argv := append([]string{bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--token", Token}, args...)
	env = append(append(os.Environ(), "STRATUS_TOKEN=", "STRATUS_SERVER="), env...)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, rest, err := StartProcLine(sctx, argv, env, "", logPath, "listening on http://")
	if err != nil {
		return nil, fmt.Errorf("stratus server: %w", err)
	}
	addr := strings.Fields(rest)[0]
	return &Server{Proc: p, Bin: bin, Addr: addr, URL: "http://" + addr, Data: data, Client: client.New("http://"+addr, Token)}, nil
}

// CLI runs the stratus CLI against the server and returns its stdout; a
// failure's error holds its stderr.
func (s *Server) CLI(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Env = append(os.Environ(), "STRATUS_SERVER="+s.URL, "STRATUS_TOKEN="+Token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("stratus %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), nil
}
