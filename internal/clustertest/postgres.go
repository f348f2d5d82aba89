package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is what NewPostgres answers when this machine has no
// PostgreSQL server binaries (Debian's postgresql package).
var ErrNoPostgres = errors.New("no PostgreSQL binaries (initdb on PATH or /usr/lib/postgresql/*/bin)")

// pgSuperuser is the superuser initdb makes; every connection is it,
// trusted on the unix socket, which only root and the server's user
// reach (it is in a directory of mode 0700).
const pgSuperuser = "postgres"

// pgReadyTimeout bounds the wait for a started server to accept a
// connection, and for one told to stop to exit.
const pgReadyTimeout = time.Minute

// Postgres is a PostgreSQL server for tests: started by StartPostgres or
// NewPostgres (a cluster of its own in a temporary directory, on a free
// loopback port), or one already running that PostgresAt names. Its
// methods are safe for concurrent use.
type Postgres struct {
	// host is a TCP host, or the directory of the unix socket (it
	// begins with a slash; the server listens on no TCP port then).
	host, user string
	port       int

	// Set for a server this package started.
	dir    string // the temporary directory: data/, the socket, postgres.log
	bin    string // the directory of initdb and postgres
	cred   *syscall.Credential
	mu     sync.Mutex
	proc   *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once proc has exited
}

// StartPostgres runs initdb into a new temporary directory as the
// postgres user (or nobody; PostgreSQL refuses to run as root), starts
// postgres on a free loopback port (its unix socket in that directory),
// waits until it accepts a connection, and stops it and removes the
// directory in t.Cleanup. Missing binaries fail t under CI=true and skip
// it otherwise.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := NewPostgres(context.Background())
	if errors.Is(err, ErrNoPostgres) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("start PostgreSQL: %v (install Debian's postgresql package)", err)
		}
		t.Skipf("start PostgreSQL: %v (install Debian's postgresql package)", err)
	}
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return p
}

// NewPostgres is StartPostgres outside a test (a TestMain): the caller
// stops the server with Close. Missing binaries are an error wrapping
// ErrNoPostgres.
func NewPostgres(ctx context.Context) (*Postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	p := &Postgres{user: pgSuperuser, bin: bin, port: pgSocketPort}
	if os.Geteuid() == 0 {
		if p.cred, err = pgCredential(); err != nil {
			return nil, err
		}
	}
	// Under the shared temporary directory, not a test's TempDir: the
	// server's user must reach it, and a test's directories are root's
	// alone.
	if p.dir, err = os.MkdirTemp("", "stratus-pg-"); err != nil {
		return nil, err
	}
	if err := p.initdb(ctx); err != nil {
		os.RemoveAll(p.dir)
		return nil, err
	}
	p.host = p.dir
	if err := p.start(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// PostgresAt is the server that rawURL (a postgres:// URL such as URL
// returns) reaches, for CreateDB and URL; it cannot be stopped or
// started.
func PostgresAt(rawURL string) (*Postgres, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host, port := u.Hostname(), u.Port()
	if q := u.Query(); strings.HasPrefix(q.Get("host"), "/") {
		host, port = q.Get("host"), q.Get("port")
		if port == "" {
			port = strconv.Itoa(pgSocketPort)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || host == "" {
		return nil, fmt.Errorf("PostgreSQL URL %s: no host and port", u.Redacted())
	}
	return &Postgres{host: host, port: n, user: u.User.Username()}, nil
}

// URL is the URL of database db on the server. For a server this
// package started it names the unix socket's directory in its query
// (postgres://postgres@localhost/DB?host=/tmp/stratus-pg-N&port=5432&sslmode=disable):
// pgx and libpq take the query's host over the URL's, and a host that
// begins with a slash is a socket's directory. The URL's host, unused,
// is there for the checks that want one (the server's --store).
func (p *Postgres) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(p.user),
		Host:     net.JoinHostPort(p.host, strconv.Itoa(p.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if strings.HasPrefix(p.host, "/") {
		u.Host = "localhost"
		u.RawQuery = url.Values{"host": {p.host}, "port": {strconv.Itoa(p.port)}, "sslmode": {"disable"}}.Encode()
	}
	return u.String()
}

// pgDBs numbers the databases CreateDB makes in this process.
var pgDBs atomic.Int64

// CreateDB creates a new empty database, dropped in t.Cleanup, and
// returns its URL.
func (p *Postgres) CreateDB(t testing.TB) string {
	t.Helper()
	return p.CreateDBFrom(t, "")
}

// CreateDBFrom is CreateDB with a copy of database template (PostgreSQL's
// CREATE DATABASE ... TEMPLATE; nobody may be connected to it) instead of
// an empty database; "" is an empty one.
func (p *Postgres) CreateDBFrom(t testing.TB, template string) string {
	t.Helper()
	ctx := context.Background()
	name, err := p.NewDB(ctx, template)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.DropDB(ctx, name); err != nil {
			t.Logf("%v", err)
		}
	})
	return p.URL(name)
}

// NewDB creates a new database, a copy of template if it is not "", and
// returns its name: CreateDBFrom outside a test. DropDB drops it.
func (p *Postgres) NewDB(ctx context.Context, template string) (string, error) {
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), pgDBs.Add(1))
	q := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
	}
	if err := p.exec(ctx, q); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

// DropDB drops database name, closing the connections left to it.
func (p *Postgres) DropDB(ctx context.Context, name string) error {
	if err := p.exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// exec runs query in the postgres database.
func (p *Postgres) exec(ctx context.Context, query string) error {
	ctx, cancel := context.WithTimeout(ctx, pgReadyTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, query)
	return err
}

// Stop shuts the server down (PostgreSQL's fast shutdown: connections
// are closed, data is kept) and waits until it has exited.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
}

// Start starts a stopped server again, on the same port with the same
// data, and waits until it accepts a connection.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.dir == "" {
		t.Fatal("start PostgreSQL: not started by this package")
	}
	if err := p.start(context.Background()); err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
}

// Close stops the server and removes its directory.
func (p *Postgres) Close() error {
	if p.dir == "" {
		return nil
	}
	err := p.stop()
	return errors.Join(err, os.RemoveAll(p.dir))
}

// initdb creates the cluster in p.dir/data, owned by the server's user,
// with trust authentication: only the unix socket reaches it, in p.dir,
// a directory of mode 0700 (root and the server's user).
func (p *Postgres) initdb(ctx context.Context) error {
	if p.cred != nil {
		if err := os.Chown(p.dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "initdb"),
		"-D", filepath.Join(p.dir, "data"), "-U", pgSuperuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, LastLines(out, 20))
	}
	return nil
}

// start starts postgres and waits until it accepts a connection.
func (p *Postgres) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		return errors.New("already running")
	}
	logPath := filepath.Join(p.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(p.bin, "postgres"),
		"-D", filepath.Join(p.dir, "data"),
		"-k", p.dir,
		"-p", strconv.Itoa(p.port),
		// No TCP: trust on a loopback port would give any local
		// process (the sandboxes of other tests) a superuser.
		"-c", "listen_addresses=",
		// Tests want speed, not durability across a crash of this host.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=300",
	)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Its own process group: Close kills whatever the server forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.proc, p.exited = cmd, exited

	ctx, cancel := context.WithTimeout(ctx, pgReadyTimeout)
	defer cancel()
	var last error
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		select {
		case <-exited:
			p.proc = nil
			return fmt.Errorf("postgres exited: %s", pgLogTail(logPath))
		default:
		}
		if last = p.ping(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("postgres accepts no connection after %s: %v: %s", pgReadyTimeout, last, pgLogTail(logPath))
		case <-exited:
		case <-time.After(pause):
		}
	}
}

// ping connects to the server once.
func (p *Postgres) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// stop asks postgres for a fast shutdown and waits until it has exited,
// killing its process group if it takes longer than pgReadyTimeout.
func (p *Postgres) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	var err error
	if e := p.proc.Process.Signal(syscall.SIGINT); e != nil && !errors.Is(e, os.ErrProcessDone) {
		err = e
	}
	select {
	case <-p.exited:
	case <-time.After(pgReadyTimeout):
		err = errors.Join(err, fmt.Errorf("postgres did not stop within %s; killed", pgReadyTimeout))
	}
	p.kill()
	return err
}

// kill kills the server's process group and waits for the postmaster.
func (p *Postgres) kill() {
	if p.proc == nil {
		return
	}
	_ = syscall.Kill(-p.proc.Process.Pid, syscall.SIGKILL)
	<-p.exited
	p.proc = nil
}

// pgBinDir is the directory of initdb and postgres: initdb's on PATH
// (symbolic links resolved, as Debian's wrappers point into
// /usr/lib/postgresql/VERSION/bin), else the newest
// /usr/lib/postgresql/VERSION/bin.
func pgBinDir() (string, error) {
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		dir := filepath.Dir(path)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	version := func(m string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(m))), 64)
		return v
	}
	slices.SortFunc(matches, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va < vb:
			return -1
		case va > vb:
			return 1
		}
		return 0
	})
	for i := len(matches) - 1; i >= 0; i-- {
		dir := filepath.Dir(matches[i])
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

// pgCredential is the user the server runs as when the tests run as
// root: postgres (Debian's package creates it), else nobody.
func pgCredential() (*syscall.Credential, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("user %s: ids %s:%s", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("a user for PostgreSQL to run as: %w", errors.Join(errs...))
}

// pgSocketPort is the port of a started server: it names its socket
// (.s.PGSQL.5432 in its own directory), no TCP port.
const pgSocketPort = 5432

// pgLogTail is the end of the server's log, for errors.
func pgLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return LastLines(b, 20)
}
