package sandboxtest

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Processes returns the PIDs of the live (not zombie) processes whose
// initial environment holds envEntry ("KEY=VALUE"). Tests put a unique
// entry in the environment of what they start and check with it that no
// process is left. A process in the middle of execve shows no environment
// for a moment, so a count of running processes may fall short; an empty
// result after a Stop is exact, as nothing dying calls execve.
func Processes(envEntry string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(envEntry)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue // gone, or a zombie (no memory left to read)
		}
		if !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, want) }) {
			continue
		}
		if procState(pid) == "Z" {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// WaitNoProcesses waits up to d until Processes(envEntry) is empty and
// returns what is still left then.
func WaitNoProcesses(envEntry string, d time.Duration) []int {
	return waitNoneLeft(envEntry, d)
}

func waitNoneLeft(envEntry string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := Processes(envEntry)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Describe formats PIDs with their command lines, for failure messages.
func Describe(pids []int) string { return describe(pids) }

func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		parts = append(parts, fmt.Sprintf("%d (%s, state %s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")), procState(pid)))
	}
	return strings.Join(parts, ", ")
}

// procState is field 3 of /proc/PID/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
