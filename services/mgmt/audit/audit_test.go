package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var base = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// clock's n-th call returns base plus n seconds and n nanoseconds.
func clock() func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return base.Add(time.Duration(n) * (time.Second + 1))
	}
}

// request is the i-th test request; every third one is denied.
func request(i int) Record {
	r := Record{Actor: "alice", Role: "operator", Remote: "192.0.2.7:50122", Method: "POST",
		Path: fmt.Sprintf("/v1/services/svc%d/restart", i), Action: "services.restart", Target: fmt.Sprintf("svc%d", i),
		Allowed: true, Status: 200}
	if i%3 == 0 {
		r.Allowed, r.Status, r.Detail = false, 403, "role operator may not restart this service"
	}
	return r
}

// appendN opens the log at path, appends requests from+1 to from+n and
// closes it, returning the records as Append returned them.
func appendN(t *testing.T, path string, from, n int) []Record {
	t.Helper()
	l, err := Open(path, Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []Record
	for i := from + 1; i <= from+n; i++ {
		r, err := l.Append(request(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// fileLines is the file's lines without their newlines.
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestGoldenLines pins the canonical encoding and the hashes: the hashes
// were computed outside Go, with sha256sum over the line without its hash
// member, as the package documentation tells other tools to.
func TestGoldenLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := l.Append(Record{Seq: 99, Prev: "x", Hash: "y", Actor: "alice", Role: "admin", Remote: "192.0.2.7:50122", Method: "POST",
		Path: "/v1/services/libvirtd/restart", Action: "services.restart", Target: "libvirtd", Allowed: true, Status: 200})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Append(Record{Actor: "bob", Role: "viewer", Remote: "192.0.2.8:40000", Method: "POST",
		Path: "/v1/guests/web1/stop", Action: "guests.stop", Target: "web1", Status: 403, Detail: `role viewer may not "stop" <web1> & co`})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	const (
		h1   = "16b6b0299528f22db8eca3f3395d5c983db194bb8bf7df2e8adcfdd83fb57bf9"
		h2   = "3addf40414901f37b70a93cd9e867bccdcaa0b271b5175f19e6e354833a52402"
		want = `{"seq":1,"time":"2024-05-01T12:00:01.000000001Z","actor":"alice","role":"admin","remote":"192.0.2.7:50122","method":"POST","path":"/v1/services/libvirtd/restart","action":"services.restart","target":"libvirtd","allowed":true,"status":200,"detail":"","prev":"` + Genesis + `","hash":"` + h1 + `"}` + "\n" +
			`{"seq":2,"time":"2024-05-01T12:00:02.000000002Z","actor":"bob","role":"viewer","remote":"192.0.2.8:40000","method":"POST","path":"/v1/guests/web1/stop","action":"guests.stop","target":"web1","allowed":false,"status":403,"detail":"role viewer may not \"stop\" \u003cweb1\u003e \u0026 co","prev":"` + h1 + `","hash":"` + h2 + `"}` + "\n"
	)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	wantR2 := Record{Seq: 2, Time: base.Add(2 * (time.Second + 1)), Actor: "bob", Role: "viewer", Remote: "192.0.2.8:40000", Method: "POST",
		Path: "/v1/guests/web1/stop", Action: "guests.stop", Target: "web1", Status: 403, Detail: `role viewer may not "stop" <web1> & co`,
		Prev: h1, Hash: h2}
	if r1.Seq != 1 || r1.Prev != Genesis || r1.Hash != h1 || !reflect.DeepEqual(r2, wantR2) {
		t.Errorf("Append returned\n%+v\n%+v\nwant seq 1, prev %s, hash %s and\n%+v", r1, r2, Genesis, h1, wantR2)
	}
}

func TestAppendReopenVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first := appendN(t, path, 0, 5)

	l, err := Open(path, Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if seq, hash := l.Head(); seq != 5 || hash != first[4].Hash {
		t.Errorf("Head after reopening = %d %s, want 5 %s", seq, hash, first[4].Hash)
	}
	r, err := l.Append(request(6))
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 6 || r.Prev != first[4].Hash {
		t.Errorf("first record after reopening: seq %d prev %s, want 6 %s", r.Seq, r.Prev, first[4].Hash)
	}
	l.Close()
	rest := appendN(t, path, 6, 4)

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Verify(f)
	if want := (VerifyResult{Records: 10, Head: rest[3].Hash}); err != nil || res != want {
		t.Errorf("Verify = %+v, %v; want %+v", res, err, want)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "audit")
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if seq, hash := l.Head(); seq != 0 || hash != Genesis {
		t.Errorf("Head of a new log = %d %s, want 0 %s", seq, hash, Genesis)
	}
	for p, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
}

func TestOpenRefusesBrokenLog(t *testing.T) {
	for _, c := range []struct {
		name   string
		tamper func(lines []string) string
		want   string
	}{
		{"record edited", func(l []string) string {
			l[2] = strings.Replace(l[2], `"target":"svc3"`, `"target":"svc4"`, 1)
			return strings.Join(l, "\n") + "\n"
		}, "line 3 (seq 3): hash does not match its content: the record was edited"},
		{"record deleted", func(l []string) string {
			return strings.Join(append(l[:1], l[2:]...), "\n") + "\n"
		}, "line 2: seq 3 follows seq 1: a record was deleted or moved"},
		{"torn last line", func(l []string) string {
			return strings.Join(l, "\n") + "\n" + l[4][:20]
		}, "line 6: no newline at the end: the last record is incomplete (the log was cut short, or a write was interrupted)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			appendN(t, path, 0, 5)
			if err := os.WriteFile(path, []byte(c.tamper(fileLines(t, path))), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Open(path, Options{})
			if err == nil {
				l.Close()
			}
			if want := "open audit log " + path + ": refusing to append to a broken chain: " + c.want; err == nil || err.Error() != want {
				t.Errorf("Open: %v\nwant: %s", err, want)
			}
		})
	}
}

func TestOpenTwice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the log is locked on Linux only")
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	if want := "open audit log " + path + ": in use: another process (or another Open in this one) has it open"; err == nil || err.Error() != want {
		t.Errorf("second Open: %v, want %s", err, want)
	}
	l.Close()
	l, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l.Close()
}

func TestConcurrentAppend(t *testing.T) {
	const goroutines, each = 8, 50
	path := filepath.Join(t.TempDir(), "audit.log")
	var forwarded []uint64
	l, err := Open(path, Options{Forward: func(r Record, _ []byte) { forwarded = append(forwarded, r.Seq) }})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(request(g*each + i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seq, head := l.Head()
	l.Close()

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Verify(f)
	if want := (VerifyResult{Records: goroutines * each, Head: head}); err != nil || res != want || seq != goroutines*each {
		t.Errorf("Verify = %+v, %v; want %+v (Head seq %d)", res, err, want, seq)
	}
	for i, s := range forwarded {
		if s != uint64(i+1) {
			t.Fatalf("Forward saw seq %d as call %d: not in seq order", s, i+1)
		}
	}
}

func TestRecords(t *testing.T) {
	defer func(s int) { indexStride = s }(indexStride)
	indexStride = 4
	path := filepath.Join(t.TempDir(), "audit.log")
	appended := appendN(t, path, 0, 3)
	l, err := Open(path, Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 4; i <= 10; i++ {
		r, err := l.Append(request(i))
		if err != nil {
			t.Fatal(err)
		}
		appended = append(appended, r)
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, []uint64{1, 2, 3}},
		{3, 100, []uint64{4, 5, 6, 7, 8, 9, 10}},
		{4, 1, []uint64{5}},
		{5, 4, []uint64{6, 7, 8, 9}},
		{8, 2, []uint64{9, 10}},
		{9, 5, []uint64{10}},
		{10, 5, nil},
		{99, 5, nil},
	} {
		got, err := l.Records(c.after, c.limit)
		if err != nil {
			t.Errorf("Records(%d, %d): %v", c.after, c.limit, err)
			continue
		}
		var want []Record
		for _, s := range c.want {
			want = append(want, appended[s-1])
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Records(%d, %d) = %v, want seqs %v", c.after, c.limit, seqs(got), c.want)
		}
	}
	if _, err := l.Records(0, 0); err == nil || err.Error() != "audit log "+path+": limit 0: want at least 1" {
		t.Errorf("Records(0, 0): %v", err)
	}

	// Edited behind the log's back, in place: the pages that hold the
	// edited record say so.
	lines := fileLines(t, path)
	lines[6] = strings.Replace(lines[6], `"target":"svc7"`, `"target":"svc8"`, 1)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Records(0, 3); err != nil {
		t.Errorf("Records(0, 3) before the edited record: %v", err)
	}
	_, err = l.Records(4, 10)
	if want := "audit log " + path + " changed since it was opened: line 7 (seq 7): hash does not match its content: the record was edited"; err == nil || err.Error() != want {
		t.Errorf("Records(4, 10) after an edit: %v\nwant: %s", err, want)
	}
}

func seqs(rs []Record) []uint64 {
	var s []uint64
	for _, r := range rs {
		s = append(s, r.Seq)
	}
	return s
}

func TestAppendRefusesForeignWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(request(1)); err != nil {
		t.Fatal(err)
	}
	size := int64(len(fileLines(t, path)[0]) + 1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{}\n")
	f.Close()
	reason := fmt.Sprintf("the file is %d bytes, not the %d written through this log: it was changed by someone else", size+3, size)
	_, err = l.Append(request(2))
	if want := "audit log " + path + ": " + reason; err == nil || err.Error() != want {
		t.Errorf("Append after a foreign write: %v\nwant: %s", err, want)
	}
	_, err = l.Append(request(3))
	if want := "audit log " + path + ": unusable after an earlier failure, open it again: " + reason; err == nil || err.Error() != want {
		t.Errorf("second Append: %v\nwant: %s", err, want)
	}
}

// TestAppendedRecordIsStored: what Append returns is what the file holds,
// even for strings encoding/json has to change.
func TestAppendedRecordIsStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Now: func() time.Time { return base.In(time.FixedZone("CEST", 2*3600)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.Append(Record{Actor: "bad\xffutf8", Action: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var stored Record
	if err := json.Unmarshal([]byte(fileLines(t, path)[0]), &stored); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, stored) || r.Actor != "bad\uFFFDutf8" || !r.Time.Equal(base) || r.Time.Location() != time.UTC {
		t.Errorf("Append returned %+v, the file holds %+v (want actor %q, time %v UTC)", r, stored, "bad\uFFFDutf8", base)
	}
}

// TestAppendInvalidUTF8: a record whose strings hold bytes that are not
// UTF-8 (a request path of %FF) is stored with U+FFFD in their place, and
// the log still verifies and opens.
func TestAppendInvalidUTF8(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Append(Record{Actor: "eve", Role: "viewer", Method: "POST", Path: "/v1/guests/\xff/start", Action: "guests.start", Target: "\xff"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "/v1/guests/\uFFFD/start" || got.Target != "\uFFFD" {
		t.Errorf("stored path %q target %q", got.Path, got.Target)
	}
	if _, err := l.Append(Record{Actor: "eve", Path: "/v1/status"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err = Open(p, Options{})
	if err != nil {
		t.Fatalf("reopen after an invalid UTF-8 record: %v", err)
	}
	l.Close()
}
