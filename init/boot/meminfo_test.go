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

func TestParseProcStatus(t *testing.T) {
	const mgmtd = "Name:\tmgmtd\nUid:\t900\t900\t900\t900\nGid:\t900\t900\t900\t900\n" +
		"VmRSS:\t   14336 kB\nCapInh:\t0000000000000000\nCapEff:\t0000000000000000\n"
	uid, capEff, rss := parseProcStatus(mgmtd)
	if uid == nil || *uid != 900 || capEff != "0000000000000000" || rss != 14336*1024 {
		t.Errorf("parseProcStatus(mgmtd) = %v, %q, %d", uid, capEff, rss)
	}
	// A kernel thread has no VmRSS; a garbled Uid is unset, not root.
	uid, capEff, rss = parseProcStatus("Name:\tkthreadd\nUid:\tx\nCapEff:\t000001ffffffffff\n")
	if uid != nil || capEff != "000001ffffffffff" || rss != 0 {
		t.Errorf("parseProcStatus(kthreadd) = %v, %q, %d", uid, capEff, rss)
	}
}
