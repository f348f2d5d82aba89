// Package benchkit is the harness the three benchmark programs of Stratus
// (bench, bench/events and bench/containers) share:
//
//   - processes: [StartProc] and [StartServer] start a child (a floor, a
//     proxy, `stratus server`) in a process group of its own that dies with
//     the bench, wait until it says where it listens, and stop it with
//     SIGTERM, then SIGKILL after a grace period;
//   - builds: [GoBuild] (static), [ModuleRoot], [CodeZip] (the archive the
//     CLI uploads), [TreeDigest] (which source was measured) and
//     [Environment] (the machine);
//   - load: [Measure] drives a [Target] with N goroutines sharing one
//     keep-alive net/http Transport; [PostRaw] is a leaner generator
//     (prepared HTTP/1.1 requests on raw connections) for paths where the
//     client's CPU would otherwise be taken from the server it measures;
//     [Interleave] runs rounds over targets and concurrencies so that the
//     figures a ratio compares are taken seconds apart;
//   - figures: nearest-rank [Percentiles], [Median], [Summarise]; CPU time
//     and memory from /proc ([ProcCPU], [SampleCPU], [ProcMem], [LoadAvg]);
//   - reports: [FmtDur], tab-aligned tables and goal lines ([PrintGoals]);
//   - profiles: [FetchProfile] from a pprof endpoint, [PprofTop] and
//     [Condense] to keep the frames that matter.
//
// Every loop here is bounded by a duration, a count or a context.
// Everything it starts, it stops: a [Proc] is waited for by whoever
// started it, through [Proc.Stop].
package benchkit
