package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/pods"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
)

// Where each driver keeps its state, under the data dir.
var (
	processState = filepath.Join("run", "sandboxes")
	runcState    = filepath.Join("run", "runc")
)

// newDriver builds the sandbox driver cfg.Sandbox asks for and says why
// it is that one: "auto" is runc when runc is on PATH (rootless when the
// server is not root: runc.New succeeds), else process; "runc" without a
// usable runc is an error. With the process driver the why says plainly that
// functions and services run unisolated, what is missing and how to get
// isolation.
func newDriver(ctx context.Context, cfg config.Config, kc *kube.Client, log *slog.Logger) (sandbox.Driver, string, error) {
	if cfg.Sandbox == pods.Name {
		return newKubeDriver(ctx, cfg, kc, log)
	}
	if cfg.Sandbox == "runc" || cfg.Sandbox == "auto" {
		d, err := runc.New(runc.Config{StateDir: filepath.Join(cfg.DataDir, runcState), Log: log})
		if err == nil {
			bin, _ := exec.LookPath("runc")
			if os.Geteuid() != 0 {
				return d, fmt.Sprintf("runc rootless: found %s, not running as root; %s", bin, rootless), nil
			}
			return d, fmt.Sprintf("runc: found %s and running as root", bin), nil
		}
		if cfg.Sandbox == "runc" {
			return nil, "", fmt.Errorf("sandbox driver runc (--sandbox runc): %w", err)
		}
		d2, err2 := process.New(process.Config{StateDir: filepath.Join(cfg.DataDir, processState), Log: log})
		if err2 != nil {
			return nil, "", err2
		}
		return d2, "process: UNISOLATED — " + whyNotRunc(err) + "; " + unisolated +
			"; to isolate them run stratus as root with runc installed, or use --sandbox runc to refuse to start without it", nil
	}
	d, err := process.New(process.Config{StateDir: filepath.Join(cfg.DataDir, processState), Log: log})
	if err != nil {
		return nil, "", err
	}
	return d, "process: UNISOLATED — chosen with --sandbox process; " + unisolated +
		"; --sandbox runc (as root, with runc installed) isolates them", nil
}

// newKubeDriver connects to the cluster cfg names and makes the kube
// driver: pods in cfg.Namespace running cfg.AgentImage, which reach this
// server at cfg.KubeAddress (else the host's first address), on nodes of
// cfg.Region unless it is the default region.
func newKubeDriver(ctx context.Context, cfg config.Config, client *kube.Client, log *slog.Logger) (sandbox.Driver, string, error) {
	var addr netip.Addr
	var err error
	if cfg.KubeAddress != "" {
		// config.Validate checked it.
		if addr, err = netip.ParseAddr(cfg.KubeAddress); err != nil {
			return nil, "", err
		}
	} else if addr, err = pods.HostAddress(); err != nil {
		return nil, "", err
	}
	region := kubeRegion(cfg)
	sctx, cancel := context.WithTimeout(ctx, kubeConnectTimeout)
	defer cancel()
	var owner *metav1.OwnerReference
	if cfg.PodName != "" && cfg.PodUID != "" {
		owner = &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: cfg.PodName, UID: types.UID(cfg.PodUID)}
	}
	d, err := pods.New(sctx, pods.Config{
		Client: client, Node: cfg.Node(), Image: cfg.AgentImage, Address: addr, Region: region, Owner: owner, Log: log,
	})
	if err != nil {
		return nil, "", err
	}
	why := fmt.Sprintf("kube: pods of image %s in namespace %s of %s, reaching this server at %s", cfg.AgentImage, client.Namespace, client.Config.Host, addr)
	if region != "" {
		why += ", on nodes of region " + region
	}
	return d, why, nil
}

// placerOf is d as a sandbox.Placer (where its sandboxes run), nil when
// it is none.
func placerOf(d sandbox.Driver) sandbox.Placer {
	p, _ := d.(sandbox.Placer)
	return p
}

// kubeNodes reads the Kubernetes cluster's nodes with the kube driver
// (GET /v1/nodes), nil for other drivers.
func kubeNodes(d sandbox.Driver) func(context.Context) (*v1.KubeNodes, error) {
	if k, ok := d.(*pods.Driver); ok {
		return k.KubeNodes
	}
	return nil
}

// kubeRegion is the region whose nodes pods must run on: cfg.Region,
// unless it is the default, which no node is labelled with.
func kubeRegion(cfg config.Config) string {
	if cfg.Region == config.Default().Region {
		return ""
	}
	return cfg.Region
}

// kubeConnectTimeout bounds the kube driver's first listing of its pods.
const kubeConnectTimeout = 30 * time.Second

// rootless says what rootless containers hold and what they do not.
const rootless = "sandboxes have their own user (root inside, this server's user outside), PID, mount, IPC and UTS namespaces, " +
	"a minimal read-only root and no capabilities, but NO cgroup limits (no memory, CPU or PIDs limit: the host does not delegate cgroups to this user) " +
	"and share the host's network (each instance's Runtime API still answers only that instance); run as root for both"

// unisolated says what the process driver does not isolate.
const unisolated = "functions and services run as plain processes of this server's user: " +
	"they see the host's files (this server's data dir included) and network, and can read and signal each other and the server " +
	"(each instance's Runtime API still answers only that instance)"

// whyNotRunc says why the runc driver could not be built.
func whyNotRunc(err error) string {
	if _, lerr := exec.LookPath("runc"); lerr != nil {
		return "runc not found on PATH"
	}
	if os.Geteuid() != 0 {
		return "not running as root, and rootless runc is unusable here: " + err.Error()
	}
	return "the runc driver is unusable here: " + err.Error()
}

// closeDriver releases what the driver holds on the host (the runc
// driver's network), once no sandbox of it runs any more.
func closeDriver(d sandbox.Driver, log *slog.Logger) {
	if c, ok := d.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			log.Warn("close sandbox driver", "driver", d.Name(), "err", err)
		}
	}
}

// stopLeftovers stops the sandboxes a crashed server left running.
func stopLeftovers(ctx context.Context, d sandbox.Driver, log *slog.Logger) error {
	ids, err := d.List(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		log.Info("stopping an instance left by an earlier server", "instance", id, "driver", d.Name())
		if err := d.Stop(ctx, id, 0); err != nil {
			return err
		}
	}
	return nil
}

// stopOtherLeftovers stops what a crashed server that used the other
// driver left running (the data dir keeps the state of both): process
// groups always, runc containers when runc's state dir exists and runc is
// usable.
func stopOtherLeftovers(ctx context.Context, cfg config.Config, chosen sandbox.Driver, log *slog.Logger) error {
	if chosen.Name() != "process" {
		dir := filepath.Join(cfg.DataDir, processState)
		if _, err := os.Stat(dir); err != nil {
			return nil
		}
		d, err := process.New(process.Config{StateDir: dir, Log: log})
		if err != nil {
			return err
		}
		return stopLeftovers(ctx, d, log)
	}
	dir := filepath.Join(cfg.DataDir, runcState)
	if ents, _ := os.ReadDir(filepath.Join(dir, "runc")); len(ents) == 0 {
		return nil
	}
	d, err := runc.New(runc.Config{StateDir: dir, Log: log})
	if err != nil {
		return nil // runc is not usable: neither were its containers left
	}
	defer closeDriver(d, log)
	return stopLeftovers(ctx, d, log)
}
