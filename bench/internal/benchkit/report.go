package benchkit

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"
)

// Logf writes a progress line to stderr, stamped with the time of day.
func Logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

// FmtDur writes d in µs below a millisecond, in ms with two decimals
// below 10 s, else as time.Duration does (to the ms).
func FmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 0:
		return "-" + FmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	default:
		return d.Round(time.Millisecond).String()
	}
}

// Signed is FmtDur with a sign.
func Signed(d time.Duration) string {
	if d >= 0 {
		return "+" + FmtDur(d)
	}
	return FmtDur(d)
}

// MB writes b bytes in units of 2^20 bytes, labelled MB.
func MB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

// Table is a tab-aligned table of figures: cells end with a tab, and
// are aligned right. Flush it once written.
func Table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
}

// List is a tab-aligned list of lines, "label\tvalue ...", aligned left.
// Flush it once written.
func List(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// Goal is a goal line of a report: what is measured, the goal, the figure
// and whether it was met.
type Goal struct {
	What, Target, Got string
	OK                bool
}

// Verdict is "met" or "MISSED".
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// PrintGoals writes title after a blank line, then one line per goal:
// what, the goal, the figure and its verdict; nothing when goals is
// empty.
func PrintGoals(w io.Writer, title string, goals []Goal) {
	if len(goals) == 0 {
		return
	}
	fmt.Fprintln(w, "\n"+title)
	tw := List(w)
	for _, g := range goals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.What, g.Target, g.Got, Verdict(g.OK))
	}
	tw.Flush()
}

// SummaryCells are the cells of a Table row for s: name, p50, p99, min,
// max, then s's p50 over each floor's ("" where a floor is missing).
func SummaryCells(name string, s Summary, floors ...*Summary) string {
	line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t", name, FmtDur(s.P50), FmtDur(s.P99), FmtDur(s.Min), FmtDur(s.Max))
	for _, f := range floors {
		if f == nil || f.P50 == 0 {
			line += "\t"
		} else {
			line += fmt.Sprintf("%.2f×\t", float64(s.P50)/float64(f.P50))
		}
	}
	return line
}
