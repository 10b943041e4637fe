package boot

import "testing"

func TestMeminfoField(t *testing.T) {
	const meminfo = "MemTotal:         498532 kB\nMemFree:          401234 kB\nHugePages_Total:       0\n"
	const status = "Name:\thvinit\nVmRSS:\t    9876 kB\nThreads:\t7\n"
	for _, tt := range []struct {
		text, key string
		want      uint64
		err       bool
	}{
		{meminfo, "MemTotal", 498532, false},
		{meminfo, "HugePages_Total", 0, false},
		{status, "VmRSS", 9876, false},
		{status, "VmSwap", 0, true},
		{"MemTotal: lots kB\n", "MemTotal", 0, true},
		{"MemTotal: 1 MB\n", "MemTotal", 0, true},
	} {
		got, err := meminfoField(tt.text, tt.key)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("meminfoField(%q, %s) = %d, %v; want %d, error %v", tt.text, tt.key, got, err, tt.want, tt.err)
		}
	}
}
