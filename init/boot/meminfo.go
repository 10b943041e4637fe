package boot

import (
	"fmt"
	"strconv"
	"strings"
)

// procFields gives the fields after "Key:" on the line of key in a
// /proc/meminfo or /proc/<pid>/status text.
func procFields(text, key string) ([]string, bool) {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.Fields(v), true
		}
	}
	return nil, false
}

// meminfoField reads a "Key:   123 kB" line of /proc/meminfo or
// /proc/<pid>/status and gives the number, in kB.
func meminfoField(text, key string) (uint64, error) {
	f, ok := procFields(text, key)
	if !ok {
		return 0, fmt.Errorf("no %s line", key)
	}
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && f[1] != "kB" {
		return 0, fmt.Errorf("%s: unexpected value %q", key, strings.Join(f, " "))
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return n, nil
}

// parseProcStatus gives a /proc/<pid>/status text's real user ID, its
// effective capabilities (hex) and its resident memory in bytes; what a
// line does not give stays unset.
func parseProcStatus(text string) (uid *int, capEff string, rss uint64) {
	if f, _ := procFields(text, "Uid"); len(f) > 0 {
		if n, err := strconv.Atoi(f[0]); err == nil {
			uid = &n
		}
	}
	if f, _ := procFields(text, "CapEff"); len(f) == 1 {
		capEff = f[0]
	}
	if kb, err := meminfoField(text, "VmRSS"); err == nil {
		rss = kb * 1024
	}
	return uid, capEff, rss
}
