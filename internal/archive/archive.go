// Package archive packs and unpacks function code as zip files, the way
// Lambda takes it: ZipDir builds the zip the CLI uploads, and Extract unpacks
// an uploaded zip into a code folder on the server.
//
// Extract treats every zip as hostile. It refuses entry names and symlinks
// that would reach outside the code folder, never writes through a symlink,
// counts the bytes it actually writes instead of trusting the sizes the zip
// declares, and works in a temporary folder that it renames into place only
// when everything has been written and synced to disk, so a failed
// Extract leaves nothing behind and a crash never leaves a partial tree
// under the destination's name. Refusals wrap stratus.ErrInvalid, or stratus.ErrTooLarge when a
// Limits bound is crossed.
package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Limits bounds what Extract accepts. A zero or negative field takes its
// default from DefaultLimits.
type Limits struct {
	MaxZipped   int64 // bytes of the zip file; default 50 MiB
	MaxUnzipped int64 // sum of uncompressed file sizes; default 250 MiB
	MaxFiles    int   // default 20000
}

// DefaultLimits returns Lambda's limits for code uploaded as a zip: 50 MiB
// zipped, 250 MiB unzipped, and at most 20000 entries.
func DefaultLimits() Limits {
	return Limits{
		MaxZipped:   50 << 20,
		MaxUnzipped: 250 << 20,
		MaxFiles:    20000,
	}
}

// orDefaults returns lim with its unset fields filled in from DefaultLimits.
func (lim Limits) orDefaults() Limits {
	def := DefaultLimits()
	if lim.MaxZipped <= 0 {
		lim.MaxZipped = def.MaxZipped
	}
	if lim.MaxUnzipped <= 0 {
		lim.MaxUnzipped = def.MaxUnzipped
	}
	if lim.MaxFiles <= 0 {
		lim.MaxFiles = def.MaxFiles
	}
	return lim
}

// Info describes extracted code.
type Info struct {
	SHA256   string // hex sha256 of the zip file bytes
	Size     int64  // bytes of the zip file
	Files    int    // regular files and symlinks extracted (directories not counted)
	Unzipped int64  // bytes written: file contents plus symlink targets
}

// Hash returns the hex sha256 and the size of the file at path.
func Hash(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash file %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// formatSize renders n bytes the way Lambda's limits are written: "MB" is
// 2^20 bytes, so the 50 MiB default reads "50 MB".
func formatSize(n int64) string {
	const kb, mb = 1 << 10, 1 << 20
	unit, div := "B", int64(1)
	switch {
	case n >= mb:
		unit, div = "MB", mb
	case n >= kb:
		unit, div = "KB", kb
	}
	if div == 1 {
		return strconv.FormatInt(n, 10) + " B"
	}
	s := strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + unit
}

// overLimit phrases "n is more than limit", falling back to exact byte
// counts when rounding would make both read the same.
func overLimit(n, limit int64) string {
	ns, ls := formatSize(n), formatSize(limit)
	if ns == ls {
		return fmt.Sprintf("%d bytes, more than the limit of %d bytes", n, limit)
	}
	return fmt.Sprintf("%s, more than the %s limit", ns, ls)
}
