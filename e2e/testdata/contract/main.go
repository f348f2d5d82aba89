// Command contract is the service the sandbox contract tests put in an
// image: it listens on $PORT (8080 when unset) and answers GET / with what
// it finds of its sandbox, as JSON: its hostname and $HOSTNAME, its user and groups,
// the content of the file $SECRET names (one only its user may read), a
// write to /tmp and /tmp's mode, and its /etc/hosts.
package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"os"
	"time"
)

// report is the answer of GET /.
type report struct {
	Hostname string `json:"hostname"`
	HostEnv  string `json:"hostEnv"` // $HOSTNAME
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Groups   []int  `json:"groups"`
	Secret   string `json:"secret"`
	TmpWrite string `json:"tmpWrite"` // "ok" or the error
	TmpMode  string `json:"tmpMode"`  // octal, sticky bit included: "1777"
	Hosts    string `json:"hosts"`
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		var rep report
		rep.Hostname, _ = os.Hostname()
		rep.HostEnv = os.Getenv("HOSTNAME")
		rep.UID, rep.GID = os.Getuid(), os.Getgid()
		rep.Groups, _ = os.Getgroups()
		rep.Secret = readOrError(os.Getenv("SECRET"))
		rep.TmpWrite = "ok"
		if err := os.WriteFile("/tmp/contract-probe", []byte("probe"), 0o600); err != nil {
			rep.TmpWrite = err.Error()
		}
		if fi, err := os.Stat("/tmp"); err != nil {
			rep.TmpMode = err.Error()
		} else {
			mode := uint32(fi.Mode().Perm())
			if fi.Mode()&fs.ModeSticky != 0 {
				mode |= 0o1000
			}
			rep.TmpMode = fmt.Sprintf("%o", mode)
		}
		rep.Hosts = readOrError("/etc/hosts")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	srv := &http.Server{Addr: ":" + port, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("contract listening on :%s", port)
	log.Fatal(srv.ListenAndServe())
}

func readOrError(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}
