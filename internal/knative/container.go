package knative

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stratus-run/stratus"
)

// probeHint is why a probe's timing fields are refused.
const probeHint = "probe timing is the server's: --service-probe-interval"

func (d *decoder) revisionSpec(path string, n *yaml.Node) {
	c := &d.m.Config
	hasContainers := false
	d.object(path, n, map[string]handler{
		"containerConcurrency": func(p string, v *yaml.Node) {
			if x, ok := d.integer(p, v, 0, stratus.MaxServiceConcurrency); ok {
				c.Concurrency = x
			}
		},
		"timeoutSeconds": func(p string, v *yaml.Node) {
			if x, ok := d.integer(p, v, 1, stratus.MaxServiceTimeoutSec); ok {
				c.TimeoutSec = x
			}
		},
		"containers": func(p string, v *yaml.Node) {
			hasContainers = true
			if !d.kind(p, v, yaml.SequenceNode, "a list") {
				return
			}
			if len(v.Content) != 1 {
				d.fail(v, p, "%d containers: a Stratus service runs exactly one", len(v.Content))
				return
			}
			if v.Content[0].Kind == yaml.AliasNode {
				d.fail(v.Content[0], p+"[0]", "YAML aliases are not supported")
				return
			}
			d.container(p+"[0]", v.Content[0])
		},
	}, map[string]string{
		"volumes":            "a replica's only writable path is /tmp",
		"serviceAccountName": "Stratus has no service accounts",
		"imagePullSecrets":   "images come from the server's store: stratus image pull",
	})
	if n.Kind == yaml.MappingNode && !hasContainers {
		d.fail(n, join(path, "containers"), "required")
	}
}

func (d *decoder) container(path string, n *yaml.Node) {
	c := &d.m.Config
	hasImage := false
	// The ports come first: the probes name the container's port.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "ports" {
				if v := n.Content[i+1]; !isNull(v) && v.Kind != yaml.AliasNode {
					d.ports(join(path, "ports"), v)
				}
				break
			}
		}
	}
	d.object(path, n, map[string]handler{
		"image": func(p string, v *yaml.Node) {
			hasImage = true
			if s, ok := d.str(p, v); ok {
				if strings.TrimSpace(s) == "" {
					d.fail(v, p, "must not be empty")
					return
				}
				c.Image = s
			}
		},
		"command": func(p string, v *yaml.Node) { c.Command = d.strings(p, v) },
		"args":    func(p string, v *yaml.Node) { c.Args = d.strings(p, v) },
		"env":     d.env,
		"ports":   func(string, *yaml.Node) {}, // read above
		"resources": func(p string, v *yaml.Node) {
			d.resources(p, v)
		},
		"readinessProbe": func(p string, v *yaml.Node) { d.probe(p, v, &c.HealthPath) },
		"livenessProbe":  func(p string, v *yaml.Node) { d.probe(p, v, &c.LivenessPath) },
	}, map[string]string{
		"name":            "a Stratus service has one unnamed container",
		"imagePullPolicy": "images come from the server's store: stratus image pull",
		"volumeMounts":    "a replica's only writable path is /tmp",
		"envFrom":         "give each variable under env",
		"workingDir":      "set it in the image",
		"securityContext": "every replica runs as an unprivileged user in its own user namespace",
		"startupProbe":    "use readinessProbe",
	})
	if n.Kind == yaml.MappingNode && !hasImage {
		d.fail(n, join(path, "image"), "required")
	}
}

func (d *decoder) env(path string, n *yaml.Node) {
	c := &d.m.Config
	d.list(path, n, func(p string, _ int, v *yaml.Node) {
		var name, value string
		hasName := false
		d.object(p, v, map[string]handler{
			"name": func(p string, v *yaml.Node) {
				if s, ok := d.str(p, v); ok {
					name, hasName = s, true
				}
			},
			"value": func(p string, v *yaml.Node) {
				if s, ok := d.str(p, v); ok {
					value = s
				}
			},
		}, map[string]string{"valueFrom": "give the value itself"})
		if v.Kind != yaml.MappingNode {
			return
		}
		if !hasName {
			d.fail(v, join(p, "name"), "required")
			return
		}
		if _, dup := c.Env[name]; dup {
			d.fail(v, join(p, "name"), "%q is given twice", name)
			return
		}
		if c.Env == nil {
			c.Env = map[string]string{}
		}
		c.Env[name] = value
	})
}

func (d *decoder) ports(path string, n *yaml.Node) {
	if !d.kind(path, n, yaml.SequenceNode, "a list") {
		return
	}
	if len(n.Content) > 1 {
		d.fail(n, path, "%d ports: a Stratus service listens on one", len(n.Content))
		return
	}
	d.list(path, n, func(p string, _ int, v *yaml.Node) {
		d.object(p, v, map[string]handler{
			"containerPort": func(p string, v *yaml.Node) {
				if x, ok := d.integer(p, v, 1, 65535); ok {
					d.m.Config.Port, d.port = x, x
				}
			},
			// Knative's port names: http1 (the default) or h2c, HTTP/2
			// without TLS (gRPC).
			"name": func(p string, v *yaml.Node) {
				s, ok := d.str(p, v)
				switch {
				case !ok:
				case s == "h2c":
					d.m.Config.H2C = true
				case s != "http1":
					d.fail(v, p, "%q: must be http1 (HTTP/1.1, the default) or h2c (HTTP/2 without TLS, as gRPC speaks)", s)
				}
			},
			"protocol": func(p string, v *yaml.Node) { d.exact(p, v, "TCP", "the only protocol is TCP") },
		}, map[string]string{"hostPort": "", "hostIP": ""})
	})
}

func (d *decoder) resources(path string, n *yaml.Node) {
	c := &d.m.Config
	// amounts are one side's (limits or requests) memory and cpu, with
	// their nodes for errors.
	type amounts struct {
		mem              int
		cpu              float64
		memNode, cpuNode *yaml.Node
	}
	var lim, req amounts
	quantities := func(a *amounts) handler {
		return func(p string, v *yaml.Node) {
			d.object(p, v, map[string]handler{
				"memory": func(p string, v *yaml.Node) {
					if s, ok := d.quantity(p, v); ok {
						x, err := parseMemory(s)
						if err != nil {
							d.fail(v, p, "%v", err)
							return
						}
						a.mem, a.memNode = x, v
					}
				},
				"cpu": func(p string, v *yaml.Node) {
					if s, ok := d.quantity(p, v); ok {
						x, err := parseCPU(s)
						if err != nil {
							d.fail(v, p, "%v", err)
							return
						}
						a.cpu, a.cpuNode = x, v
					}
				},
			}, map[string]string{"ephemeral-storage": "", "nvidia.com/gpu": ""})
		}
	}
	d.object(path, n, map[string]handler{
		"limits":   quantities(&lim),
		"requests": quantities(&req),
	}, nil)
	// Stratus gives a replica one amount of memory and one CPU limit: the
	// limit, else the request. A CPU request beside a CPU limit is the
	// replica's CPU share (cpu.shares), as a pod's is. A request above its
	// limit is refused, as Kubernetes does.
	if lim.mem > 0 && req.mem > lim.mem {
		d.fail(req.memNode, join(path, "requests.memory"), "%s is more than limits.memory, %s", formatMemory(req.mem), formatMemory(lim.mem))
	}
	if lim.cpu > 0 && req.cpu > lim.cpu {
		d.fail(req.cpuNode, join(path, "requests.cpu"), "%s is more than limits.cpu, %s", formatCPU(req.cpu), formatCPU(lim.cpu))
	}
	mem, memNode, memPath := lim.mem, lim.memNode, "limits.memory"
	if mem == 0 {
		mem, memNode, memPath = req.mem, req.memNode, "requests.memory"
	}
	cpu, cpuNode, cpuPath := lim.cpu, lim.cpuNode, "limits.cpu"
	if cpu == 0 {
		cpu, cpuNode, cpuPath = req.cpu, req.cpuNode, "requests.cpu"
	}
	if mem != 0 && (mem < stratus.MinServiceMemoryMB || mem > stratus.MaxServiceMemoryMB) {
		d.fail(memNode, join(path, memPath), "%s: must be between %s and %s", formatMemory(mem),
			formatMemory(stratus.MinServiceMemoryMB), formatMemory(stratus.MaxServiceMemoryMB))
	}
	if cpu != 0 && (cpu < stratus.MinServiceCPU || cpu > stratus.MaxServiceCPU) {
		d.fail(cpuNode, join(path, cpuPath), "%s: must be between %s and %d", formatCPU(cpu), formatCPU(stratus.MinServiceCPU), stratus.MaxServiceCPU)
	}
	c.MemoryMB, c.CPU = mem, cpu
	if lim.cpu > 0 && req.cpu > 0 {
		c.CPURequest = req.cpu
		if req.cpu < stratus.MinServiceCPU {
			d.fail(req.cpuNode, join(path, "requests.cpu"), "%s: must be at least %s", formatCPU(req.cpu), formatCPU(stratus.MinServiceCPU))
		}
	}
}

// quantity reads a quantity: a string (512Mi) or a plain number (1, 0.5).
func (d *decoder) quantity(path string, n *yaml.Node) (string, bool) {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || n.Tag == "!!int" || n.Tag == "!!float") {
		return n.Value, true
	}
	d.fail(n, path, "want a quantity such as 512Mi or 500m, got %s", describe(n))
	return "", false
}

// probe reads a readiness or liveness probe: an HTTP GET of a path on
// the container's port (into *path), or a TCP connect to the port
// (Stratus's default, leaving *path empty).
func (d *decoder) probe(p string, n *yaml.Node, path *string) {
	kinds := 0
	portField := func(p string, v *yaml.Node) {
		var x int
		if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
			// A named port: Stratus's one port, http1 or h2c.
			if name := portName(d.m.Config.H2C); v.Value != name {
				d.fail(v, p, "%q: the container's port is named %s", v.Value, name)
			}
			return
		}
		x, ok := d.integer(p, v, 0, 65535)
		if !ok {
			return
		}
		// Knative writes port 0 for "the container's port".
		want := d.port
		if want == 0 {
			want = stratus.DefaultServicePort
		}
		if x != 0 && x != want {
			d.fail(v, p, "%d: Stratus probes the container's port, %d", x, want)
		}
	}
	timing := map[string]string{
		"initialDelaySeconds": probeHint, "periodSeconds": probeHint, "timeoutSeconds": probeHint,
		"successThreshold": probeHint, "failureThreshold": probeHint, "terminationGracePeriodSeconds": probeHint,
	}
	d.object(p, n, map[string]handler{
		"httpGet": func(p string, v *yaml.Node) {
			kinds++
			d.object(p, v, map[string]handler{
				"path": func(p string, v *yaml.Node) {
					if s, ok := d.str(p, v); ok {
						if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n") {
							d.fail(v, p, "%q: must start with / and hold no spaces", s)
							return
						}
						*path = s
					}
				},
				"port":   portField,
				"scheme": func(p string, v *yaml.Node) { d.exact(p, v, "HTTP", "Stratus probes with plain HTTP") },
			}, map[string]string{"host": "Stratus probes the replica itself", "httpHeaders": ""})
			if *path == "" && v.Kind == yaml.MappingNode {
				*path = "/"
			}
		},
		"tcpSocket": func(p string, v *yaml.Node) {
			kinds++
			d.object(p, v, map[string]handler{"port": portField}, map[string]string{"host": "Stratus probes the replica itself"})
		},
	}, mergeHints(timing, map[string]string{"exec": "use httpGet or tcpSocket", "grpc": "use httpGet or tcpSocket"}))
	if kinds > 1 {
		d.fail(n, p, "give one of httpGet and tcpSocket")
	}
}

func mergeHints(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// traffic reads spec.traffic; the revision names are resolved once the
// whole manifest is read (metadata.name may come after spec).
func (d *decoder) traffic(path string, n *yaml.Node) {
	d.trafficNode, d.trafficPath = n, path
	d.m.Traffic = []stratus.TrafficTarget{}
	d.list(path, n, func(p string, _ int, v *yaml.Node) {
		var t stratus.TrafficTarget
		var rev *yaml.Node
		var latest *bool
		d.object(p, v, map[string]handler{
			"revisionName": func(p string, v *yaml.Node) {
				if _, ok := d.str(p, v); ok {
					rev = v
				}
			},
			"latestRevision": func(p string, v *yaml.Node) {
				if b, ok := d.boolean(p, v); ok {
					latest = &b
				}
			},
			"percent": func(p string, v *yaml.Node) {
				if x, ok := d.integer(p, v, 0, 100); ok {
					t.Percent = x
				}
			},
			"tag": func(p string, v *yaml.Node) {
				if s, ok := d.str(p, v); ok {
					t.Tag = s
				}
			},
		}, map[string]string{"configurationName": "name a revision or the latest one", "url": "the server writes it, under status"})
		if v.Kind != yaml.MappingNode {
			return
		}
		switch {
		case latest == nil:
			t.Latest = rev == nil
		case *latest && rev != nil:
			d.fail(v, join(p, "latestRevision"), "true names the latest revision: give revisionName %q or latestRevision true, not both", rev.Value)
		case !*latest && rev == nil:
			d.fail(v, join(p, "revisionName"), "required with latestRevision false")
		default:
			t.Latest = *latest
		}
		d.m.Traffic = append(d.m.Traffic, t)
		d.revNames = append(d.revNames, revRef{path: join(p, "revisionName"), node: rev})
	})
}

// revRef is a traffic target's revisionName, resolved after the walk.
type revRef struct {
	path string
	node *yaml.Node // nil: none given
}

// finishTraffic resolves the traffic's revision names and checks the
// split as a whole.
func (d *decoder) finishTraffic() {
	if d.trafficNode == nil {
		return
	}
	for i, r := range d.revNames {
		if r.node == nil {
			continue
		}
		n, ok := d.revisionNumber(r.node.Value)
		if !ok {
			d.fail(r.node, r.path, "%q: Stratus names the revisions of %s %s, %s, ...", r.node.Value, d.m.Name,
				RevisionName(d.m.Name, 1), RevisionName(d.m.Name, 2))
			continue
		}
		d.m.Traffic[i].Revision = n
	}
	if len(d.errs) > 0 {
		return
	}
	if err := stratus.ValidateTraffic(d.m.Traffic); err != nil {
		msg := strings.TrimPrefix(strings.TrimSuffix(err.Error(), ": "+stratus.ErrInvalid.Error()), "traffic: ")
		d.fail(d.trafficNode, d.trafficPath, "%s", msg)
	}
}

// revisionNumber reads revision name s of the manifest's service, as
// Stratus forms it: NAME-00002 is 2.
func (d *decoder) revisionNumber(s string) (int, bool) {
	num, ok := strings.CutPrefix(s, d.m.Name+"-")
	if !ok || d.m.Name == "" || num == "" || len(num) > 9 {
		return 0, false
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || RevisionName(d.m.Name, n) != s {
		return 0, false
	}
	return n, true
}

// portName is the name of the container's port in a Knative manifest:
// h2c when the service speaks HTTP/2 without TLS, else http1.
func portName(h2c bool) string {
	if h2c {
		return "h2c"
	}
	return "http1"
}
