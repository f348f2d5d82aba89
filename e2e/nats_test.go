package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/stratus-run/stratus/internal/eventually"
)

// natsCreds is what stratus nats credentials -o json prints.
type natsCreds struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	URLWithAuth string `json:"urlWithAuth"`
}

// natsCredentials runs stratus nats credentials -o json on s's data dir.
func (s *server) natsCredentials() natsCreds {
	s.t.Helper()
	return decode[natsCreds](s.t, []byte(s.mustCLI("nats", "credentials", "--data", s.Data, "-o", "json")))
}

// TestNATSListenCredentials: with --nats-listen, NATS clients need the
// credentials the server made, and may only publish to topics.
func TestNATSListenCredentials(t *testing.T) {
	s := startServer(t, "--nats-listen", "127.0.0.1:0")
	creds := s.natsCredentials()
	if creds.User == "" || len(creds.Password) < 32 || !strings.HasPrefix(creds.URL, "nats://127.0.0.1:") ||
		creds.URLWithAuth != strings.Replace(creds.URL, "nats://", "nats://"+creds.User+":"+creds.Password+"@", 1) {
		t.Fatalf("credentials %+v", creds)
	}
	file := filepath.Join(s.Data, "nats-client.json")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file %s: %v, mode %v; want 0600", file, err, fi.Mode().Perm())
	}
	if out := s.mustCLI("nats", "creds", "--data", s.Data); !strings.Contains(out, creds.Password) || !strings.Contains(out, "stratus.topic.NAME") {
		t.Errorf("nats creds printed %q", out)
	}

	// Refused without the credentials or with a wrong password.
	if nc, err := nats.Connect(creds.URL); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect without credentials = %v, want an authorization violation", err)
		if nc != nil {
			nc.Close()
		}
	}
	if nc, err := nats.Connect(creds.URL, nats.UserInfo(creds.User, "not-"+creds.Password)); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect with a wrong password = %v, want an authorization violation", err)
		if nc != nil {
			nc.Close()
		}
	}

	s.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	s.tpDeploySinks("sink")
	s.mustCLI("topic", "create", "feed")
	s.mustCLI("subscribe", "feed", "--function", "sink")
	errs := make(chan error, 100)
	nc, err := nats.Connect(creds.URLWithAuth, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect with the credentials: %v", err)
	}
	defer nc.Close()
	violation := func(op, subject string) {
		t.Helper()
		want := strings.ToLower(op + ` to "` + subject + `"`)
		deadline := time.After(5 * time.Second)
		for {
			select {
			case err := <-errs:
				if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), want) {
					return
				}
			case <-deadline:
				t.Errorf("no permissions violation for %s to %q", op, subject)
				return
			}
		}
	}

	// A topic event, published with JetStream's acknowledgement.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "stratus.topic.feed", []byte(tpCE("j1", "nats.event", "/nats", `{"via":"jetstream"}`))); err != nil {
		t.Fatalf("publish a topic event with JetStream: %v", err)
	}
	s.tpWaitIDs("sink", "j1")

	// The async queue's subject and JetStream's API are the server's.
	if err := nc.Publish("stratus.async.echo", []byte(`{"evil":true}`)); err != nil {
		t.Fatal(err)
	}
	violation("Publish", "stratus.async.echo")
	if _, err := nc.Request("$JS.API.INFO", nil, time.Second); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("request $JS.API.INFO = %v, want no answer", err)
	}
	violation("Publish", "$JS.API.INFO")
	if _, err := nc.SubscribeSync("stratus.>"); err != nil {
		t.Fatal(err)
	}
	violation("Subscription", "stratus.>")
	// An async invocation made through the API after the refused
	// publish is queued behind anything that publish could have queued:
	// once its record is stored, the refused event has had its turn.
	id, status, body := s.asyncInvoke("echo", `{}`)
	if id == "" {
		t.Fatalf("async invoke echo: %d %s", status, body)
	}
	s.waitRecord("echo", id)
	if recs := s.records("echo"); len(recs) != 1 {
		t.Errorf("echo ran %d times, want once (the API's invocation), none from the refused publish: %+v", len(recs), recs)
	}
	nc.Close()

	// A restart keeps the credentials (the port is new).
	s.Stop()
	s.Restart()
	again := s.natsCredentials()
	if again.User != creds.User || again.Password != creds.Password {
		t.Errorf("credentials after a restart %+v, want %+v", again, creds)
	}
	nc2, err := nats.Connect(again.URLWithAuth)
	if err != nil {
		t.Fatalf("connect after a restart: %v", err)
	}
	nc2.Close()
}

func TestNATSCredentialsWithoutListen(t *testing.T) {
	s := startServer(t)
	r := s.cli("nats", "credentials", "--data", s.Data)
	if r.Code != 1 || !strings.Contains(r.Stderr, "--nats-listen") {
		t.Errorf("nats credentials without --nats-listen: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(s.Data, "nats-client.json")); err == nil {
		t.Error("a credentials file was made without --nats-listen")
	}
}

// startNATSServer runs the real nats-server with JetStream on a free port
// and the extra args; it returns the port.
func startNATSServer(t *testing.T, args ...string) int {
	t.Helper()
	natsBin := buildNATSServer(t)
	port := freePort(t)
	argv := append([]string{"-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	var out bytes.Buffer
	cmd := exec.Command(natsBin, argv...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", out.String())
		}
	})
	eventually.True(t, 10*time.Second, "nats-server listening", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port
}

// failStart runs stratus server with args, which must exit with an error
// within a minute; it returns what the server wrote to stderr.
func failStart(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	argv := append([]string{"server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--token", testToken}, args...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("stratus server %v did not exit within a minute:\n%s", args, stderr.String())
	}
	if err == nil {
		t.Fatalf("stratus server %v exited 0", args)
	}
	return stderr.String()
}

// TestExternalNATSCredentials: --nats-url with a user and password, a
// token, an nkey; without them the server stops at start and says why.
func TestExternalNATSCredentials(t *testing.T) {
	run := func(t *testing.T, args ...string) {
		t.Helper()
		s := startServer(t, args...)
		s.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
		id := s.enqueue("echo", `{"echo":1}`)
		s.waitState(id, "succeeded", 30*time.Second)
	}
	t.Run("user and password", func(t *testing.T) {
		port := startNATSServer(t, "--user", "stratus", "--pass", "s3cret-pass")
		// Two URLs, the first one dead: the list keeps working.
		dead := freePort(t)
		run(t, "--nats-url", fmt.Sprintf("nats://stratus:s3cret-pass@127.0.0.1:%d,nats://stratus:s3cret-pass@127.0.0.1:%d", dead, port))
		for _, u := range []string{fmt.Sprintf("nats://127.0.0.1:%d", port), fmt.Sprintf("nats://stratus:wrong-pass@127.0.0.1:%d", port)} {
			out := failStart(t, "--nats-url", u)
			if !strings.Contains(strings.ToLower(out), "authorization violation") || !strings.Contains(out, "credentials") {
				t.Errorf("start with %s: the error does not say the credentials were refused:\n%s", u, out)
			}
			if strings.Contains(out, "wrong-pass") {
				t.Errorf("the error shows the password:\n%s", out)
			}
		}
	})
	t.Run("token", func(t *testing.T) {
		port := startNATSServer(t, "--auth", "tok-0123456789")
		run(t, "--nats-url", fmt.Sprintf("nats://tok-0123456789@127.0.0.1:%d", port))
		if out := failStart(t, "--nats-url", fmt.Sprintf("nats://bad-token@127.0.0.1:%d", port)); !strings.Contains(strings.ToLower(out), "authorization violation") || strings.Contains(out, "bad-token") {
			t.Errorf("start with a wrong token:\n%s", out)
		}
	})
	t.Run("nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		dir := t.TempDir()
		seedFile := filepath.Join(dir, "user.nk")
		conf := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, fmt.Appendf(nil, "authorization { users = [ { nkey: %q } ] }\n", pub), 0o600); err != nil {
			t.Fatal(err)
		}
		port := startNATSServer(t, "-c", conf)
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		run(t, "--nats-url", url, "--nats-nkey", seedFile)
		if out := failStart(t, "--nats-url", url); !strings.Contains(strings.ToLower(out), "authorization violation") {
			t.Errorf("start without the nkey:\n%s", out)
		}
		if out := failStart(t, "--nats-url", url, "--nats-nkey", filepath.Join(dir, "missing.nk")); !strings.Contains(out, "--nats-nkey") {
			t.Errorf("start with a missing nkey file:\n%s", out)
		}
	})
}

// TestExternalNATSTLS: --nats-url tls://… with a CA and a client
// certificate the test makes; nats-server verifies the client.
func TestExternalNATSTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	f := func(name string) string { return filepath.Join(dir, name) }
	port := startNATSServer(t, "--tls", "--tlscert", f("server.pem"), "--tlskey", f("server.key"),
		"--tlscacert", f("ca.pem"), "--tlsverify")
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	s := startServer(t, "--nats-url", url, "--nats-ca", f("ca.pem"), "--nats-cert", f("client.pem"), "--nats-key", f("client.key"))
	s.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	id := s.enqueue("echo", `{"echo":1}`)
	s.waitState(id, "succeeded", 30*time.Second)

	if out := failStart(t, "--nats-url", url, "--nats-cert", f("client.pem")); !strings.Contains(out, "--nats-key") {
		t.Errorf("a client certificate without its key:\n%s", out)
	}
	// Without the client certificate the server cannot connect: it says
	// why while it retries.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--token", testToken,
		"--nats-url", url, "--nats-ca", f("ca.pem"))
	cmd.Stderr = &lockedWriter{mu: &mu, w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	eventually.True(t, 20*time.Second, "a log line saying why NATS is not connected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(stderr.String(), "nats not connected yet")
	})
}

// newCert writes NAME.pem and NAME.key in dir: a CA when parent is nil,
// else a certificate for 127.0.0.1 (server and client use) signed by it.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "stratus-test-" + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
