package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus/internal/eventually"
)

// contractBuild builds testdata/contract, a static HTTP service that
// reports what it finds of its sandbox, once per test binary.
var contractBuild = sync.OnceValues(func() (string, error) {
	return buildStatic("contract", filepath.Join(fixtures, "contract", "contract"))
})

// contractReport is testdata/contract's answer to GET /.
type contractReport struct {
	Hostname string `json:"hostname"`
	HostEnv  string `json:"hostEnv"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Groups   []int  `json:"groups"`
	Secret   string `json:"secret"`
	TmpWrite string `json:"tmpWrite"`
	TmpMode  string `json:"tmpMode"`
	Hosts    string `json:"hosts"`
}

// TestSandboxContract deploys, as services, images built the way ko and
// distroless build theirs: a static binary owned by root, a file only the
// image's non-root user (65532) may read, and a USER that names that user
// (numerically with no /etc/passwd, as ko's; by name through the image's
// own /etc/passwd and /etc/group, as distroless's), no /tmp or a /tmp of
// the wrong mode, and a program listening on port 80. Each service
// becomes ready on :80 though its user has no capability; its program
// runs as the image's user and reads its own 0600 file; /tmp is 1777 and
// writable; and each replica's hostname is its replica name, which its
// /etc/hosts resolves and $HOSTNAME holds, so that sequential requests, shared round-robin
// by two replicas, say which replica answered.
func TestSandboxContract(t *testing.T) {
	needRunc(t)
	p, err := contractBuild()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "only nonroot reads this"
	base := []layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/contract", Mode: 0o755, Body: bin},
		{Name: "home/", Mode: 0o755},
		{Name: "home/nonroot/", Mode: 0o700, UID: 65532},
		{Name: "home/nonroot/secret", Mode: 0o600, Body: []byte(secret), UID: 65532},
	}
	named := append(slices.Clip(base),
		layerFile{Name: "etc/", Mode: 0o755},
		layerFile{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		layerFile{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnonroot:x:65532:\ntty:x:5:nonroot\n")},
		layerFile{Name: "tmp/", Mode: 0o755},
	)
	s := startServer(t, fastServices...)
	for _, tc := range []struct {
		name, user string
		files      []layerFile
		gid        int
		groups     []int
	}{
		// ko: USER 65532 and nothing in /etc; a uid with no passwd entry
		// gets group 0, as Docker gives it, and no other.
		{"ko", "65532", base, 0, nil},
		// distroless: USER nonroot, its group, and the groups that list
		// it in /etc/group as supplementary ones.
		{"distroless", "nonroot", named, 65532, []int{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layer, err := layerOf(tc.files)
			if err != nil {
				t.Fatal(err)
			}
			cfg := ggcr.Config{
				Entrypoint: []string{"/app/contract"}, User: tc.user, WorkingDir: "/home/nonroot",
				Env:          []string{"PATH=/app", "SECRET=/home/nonroot/secret"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
			}
			ref := "contract-" + tc.name + ":v1"
			s.mustCLI("image", "import", writeImageTar(t, imageOf(t, cfg, layer), ref))
			svc := "contract-" + tc.name
			s.mustCLI("service", "deploy", svc, "--image", ref, "--port", "80", "--min", "2")
			eventually.True(t, 30*time.Second, svc+" to have 2 ready replicas", func() bool {
				return s.service(svc).Replicas.Ready == 2
			})
			var ids []string
			for _, r := range s.service(svc).Detail {
				ids = append(ids, r.ID)
			}
			seen := map[string]bool{}
			for i := range 6 {
				code, body := s.get("/svc/" + svc + "/")
				if code != 200 {
					t.Fatalf("GET /svc/%s/ #%d: %d %s", svc, i, code, body)
				}
				rep := decode[contractReport](t, []byte(body))
				seen[rep.Hostname] = true
				if !slices.Contains(ids, rep.Hostname) || rep.HostEnv != rep.Hostname {
					t.Errorf("hostname %q ($HOSTNAME %q) is not one of the replicas %q", rep.Hostname, rep.HostEnv, ids)
				}
				if rep.UID != 65532 || rep.GID != tc.gid || !slices.Equal(sorted(rep.Groups), tc.groups) {
					t.Errorf("runs as uid %d gid %d groups %v, want 65532, %d, %v", rep.UID, rep.GID, rep.Groups, tc.gid, tc.groups)
				}
				if rep.Secret != secret {
					t.Errorf("reading its own 0600 file: %q", rep.Secret)
				}
				if rep.TmpWrite != "ok" || rep.TmpMode != "1777" {
					t.Errorf("/tmp: write %s, mode %s; want ok, 1777", rep.TmpWrite, rep.TmpMode)
				}
				if a, ok := hostsEntry(rep.Hosts, rep.Hostname); !ok || !a.IsPrivate() {
					t.Errorf("/etc/hosts does not map %q to the replica's address:\n%s", rep.Hostname, rep.Hosts)
				}
				if a, ok := hostsEntry(rep.Hosts, "localhost"); !ok || !a.IsLoopback() {
					t.Errorf("/etc/hosts does not map localhost:\n%s", rep.Hosts)
				}
			}
			if len(seen) != 2 {
				t.Errorf("6 sequential requests reached hostnames %v, want both replicas %q", seen, ids)
			}
		})
	}
}

// TestSandboxContractBadUser: an image whose USER cannot be resolved in
// it is refused at deploy, with a message that says what to change.
func TestSandboxContractBadUser(t *testing.T) {
	needRunc(t)
	p, err := contractBuild()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layerOf([]layerFile{{Name: "app/", Mode: 0o755}, {Name: "app/contract", Mode: 0o755, Body: bin}})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, fastServices...)
	for _, tc := range []struct{ user, want string }{
		{"ghost", `no user "ghost" in the image's /etc/passwd`},
		{"70000", "at most 65535"},
		{"65532:", "name, uid, name:group or uid:gid"},
	} {
		ref := "baduser:" + strings.NewReplacer(":", "c").Replace(tc.user)
		cfg := ggcr.Config{Entrypoint: []string{"/app/contract"}, User: tc.user}
		s.mustCLI("image", "import", writeImageTar(t, imageOf(t, cfg, layer), ref))
		r := s.cli("service", "deploy", "baduser", "--image", ref)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("deploy of an image with USER %q: exit %d, stderr %q; want a failure saying %q", tc.user, r.Code, r.Stderr, tc.want)
		}
	}
}

// hostsEntry is the first address an /etc/hosts gives name.
func hostsEntry(hosts, name string) (netip.Addr, bool) {
	for line := range strings.Lines(hosts) {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || !slices.Contains(f[1:], name) {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func sorted(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
