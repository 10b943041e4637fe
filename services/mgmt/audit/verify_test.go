package audit

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// intactLines is a fresh 10-record log, one string a line.
func intactLines(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	appendN(t, path, 0, 10)
	return fileLines(t, path)
}

func join(lines []string) string { return strings.Join(lines, "\n") + "\n" }

func parseLine(t *testing.T, line string) Record {
	t.Helper()
	var r Record
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// reseal edits a line's record and gives it a hash that matches again.
func reseal(t *testing.T, line string, edit func(*Record)) string {
	t.Helper()
	r := parseLine(t, line)
	edit(&r)
	b, err := seal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// rewrite edits line i (0-based) and recomputes every hash and prev from
// there to the end: what someone who can write the file can always do.
func rewrite(t *testing.T, lines []string, i int, edit func(*Record)) []string {
	t.Helper()
	lines = slices.Clone(lines)
	lines[i] = reseal(t, lines[i], edit)
	for j := i + 1; j < len(lines); j++ {
		prev := parseLine(t, lines[j-1]).Hash
		lines[j] = reseal(t, lines[j], func(r *Record) { r.Prev = prev })
	}
	return lines
}

func TestVerifyTampering(t *testing.T) {
	intact := intactLines(t)
	head := parseLine(t, intact[9]).Hash
	const incomplete = "no newline at the end: the last record is incomplete (the log was cut short, or a write was interrupted)"
	for _, c := range []struct {
		name    string
		tamper  func(l []string) string
		records uint64 // good records before the break
		err     string
	}{
		{"intact", join, 10, ""},
		{"empty", func([]string) string { return "" }, 0, ""},
		{"field edited", func(l []string) string {
			l[4] = strings.Replace(l[4], `"target":"svc5"`, `"target":"svc6"`, 1)
			return join(l)
		}, 4, "line 5 (seq 5): hash does not match its content: the record was edited"},
		{"denial turned into a success", func(l []string) string {
			l[5] = strings.Replace(l[5], `"allowed":false,"status":403`, `"allowed":true,"status":200`, 1)
			return join(l)
		}, 5, "line 6 (seq 6): hash does not match its content: the record was edited"},
		{"field edited and its hash recomputed", func(l []string) string {
			l[4] = reseal(t, l[4], func(r *Record) { r.Target = "svc6" })
			return join(l)
		}, 5, "line 6 (seq 6): prev does not match the hash of line 5 (seq 5): line 5 was edited or replaced"},
		{"seq edited", func(l []string) string {
			l[4] = strings.Replace(l[4], `{"seq":5,`, `{"seq":50,`, 1)
			return join(l)
		}, 4, "line 5 (seq 50): hash does not match its content: the record was edited"},
		{"line deleted", func(l []string) string {
			return join(slices.Delete(l, 4, 5))
		}, 4, "line 5: seq 6 follows seq 4: a record was deleted or moved"},
		{"three lines deleted", func(l []string) string {
			return join(slices.Delete(l, 4, 7))
		}, 4, "line 5: seq 8 follows seq 4: 3 records were deleted or moved"},
		{"first line deleted", func(l []string) string {
			return join(l[1:])
		}, 0, "line 1: the log starts at seq 2, not 1: the oldest records were deleted"},
		{"lines swapped", func(l []string) string {
			l[3], l[4] = l[4], l[3]
			return join(l)
		}, 3, "line 4: seq 5 follows seq 3: a record was deleted or moved"},
		{"line duplicated", func(l []string) string {
			return join(slices.Insert(l, 5, l[4]))
		}, 5, "line 6: seq 5 follows seq 5: records were moved or duplicated"},
		{"middle line cut short", func(l []string) string {
			l[4] = l[4][:len(l[4])/2]
			return join(l)
		}, 4, "line 5: not a valid record: unexpected end of JSON input"},
		{"file cut in the middle of a line", func(l []string) string {
			return join(l[:4]) + l[4][:len(l[4])/2]
		}, 4, "line 5: " + incomplete},
		{"last newline removed", func(l []string) string {
			return strings.TrimSuffix(join(l), "\n")
		}, 9, "line 10: " + incomplete},
		{"empty line inserted", func(l []string) string {
			return join(slices.Insert(l, 5, ""))
		}, 5, "line 6: empty line"},
		{"whitespace added", func(l []string) string {
			l[4] = strings.Replace(l[4], `,"allowed":`, `, "allowed":`, 1)
			return join(l)
		}, 4, "line 5 (seq 5): not in the canonical encoding: the record was edited"},
		{"member added", func(l []string) string {
			l[4] = strings.Replace(l[4], `{"seq":5,`, `{"note":"x","seq":5,`, 1)
			return join(l)
		}, 4, "line 5 (seq 5): not in the canonical encoding: the record was edited"},
		{"member duplicated", func(l []string) string {
			// Readers disagree on which of the two counts.
			l[5] = strings.Replace(l[5], `{"seq":6,`, `{"allowed":true,"seq":6,`, 1)
			return join(l)
		}, 5, "line 6 (seq 6): not in the canonical encoding: the record was edited"},
		{"hash in capitals", func(l []string) string {
			r := parseLine(t, l[4])
			l[4] = strings.Replace(l[4], r.Hash, strings.ToUpper(r.Hash), 1)
			return join(l)
		}, 4, "line 5 (seq 5): hash is not 64 lowercase hex digits: the record was edited"},
		{"first prev edited and its hash recomputed", func(l []string) string {
			l[0] = reseal(t, l[0], func(r *Record) { r.Prev = strings.Repeat("1", 64) })
			return join(l)
		}, 0, "line 1 (seq 1): prev is not 64 zeros, as the first record's must be"},
		// What the chain alone cannot see (VerifyAgainst can).
		{"newest record removed", func(l []string) string {
			return join(l[:9])
		}, 9, ""},
		{"chain rewritten from line 5", func(l []string) string {
			return join(rewrite(t, l, 4, func(r *Record) { r.Target = "svc6" }))
		}, 10, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Verify(strings.NewReader(c.tamper(slices.Clone(intact))))
			if got := errString(err); got != c.err || res.Records != c.records {
				t.Errorf("Verify = %d records, %q\nwant     %d records, %q", res.Records, got, c.records, c.err)
			}
			var ce *ChainError
			if err != nil && !errors.As(err, &ce) {
				t.Errorf("error %v is not a *ChainError", err)
			}
			if c.name == "intact" && res.Head != head {
				t.Errorf("Head = %s, want %s", res.Head, head)
			}
			if c.name == "empty" && res.Head != Genesis {
				t.Errorf("Head of an empty log = %s, want %s", res.Head, Genesis)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestVerifyAgainst(t *testing.T) {
	intact := intactLines(t)
	hash := func(lines []string, seq int) string { return parseLine(t, lines[seq-1]).Hash }
	h5, h7, h10 := hash(intact, 5), hash(intact, 7), hash(intact, 10)
	rewritten := rewrite(t, intact, 4, func(r *Record) { r.Target = "svc6" })
	tail := reseal(t, intact[9], func(r *Record) { r.Status = 500 })
	for _, c := range []struct {
		name    string
		log     []string
		headSeq uint64
		head    string
		err     string
	}{
		{"at the head", intact, 10, h10, ""},
		{"grown since", intact, 5, h5, ""},
		{"empty anchor", intact, 0, Genesis, ""},
		{"empty log, empty anchor", nil, 0, Genesis, ""},
		{"newest record removed", intact[:9], 10, h10, "the log ends at seq 9, before the expected head at seq 10: the newest record was removed"},
		{"newest 3 removed", intact[:7], 10, h10, "the log ends at seq 7, before the expected head at seq 10: the newest 3 records were removed"},
		{"everything removed", nil, 10, h10, "the log ends at seq 0, before the expected head at seq 10: the newest 10 records were removed"},
		{"newest rewritten", append(slices.Clone(intact[:9]), tail), 10, h10,
			"seq 10 has hash " + parseLine(t, tail).Hash + ", not the expected head " + h10 + ": the log was rewritten"},
		{"rewritten from seq 5, anchor at 10", rewritten, 10, h10,
			"seq 10 has hash " + hash(rewritten, 10) + ", not the expected head " + h10 + ": the log was rewritten"},
		{"rewritten from seq 5, anchor at 7", rewritten, 7, h7,
			"seq 7 has hash " + hash(rewritten, 7) + ", not the expected head " + h7 + ": the log was rewritten"},
		{"broken chain", slices.Delete(slices.Clone(intact), 2, 3), 10, h10, "line 3: seq 4 follows seq 2: a record was deleted or moved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			content := ""
			if len(c.log) > 0 {
				content = join(c.log)
			}
			_, err := VerifyAgainst(strings.NewReader(content), c.headSeq, c.head)
			if got := errString(err); got != c.err {
				t.Errorf("VerifyAgainst(%d, %s):\n got %q\nwant %q", c.headSeq, c.head, got, c.err)
			}
		})
	}
}

// TestOutsideRecipe checks the recipe the package documentation gives
// other tools on every line of a log: cut `,"hash":"…"}`, add `}`, hash.
func TestOutsideRecipe(t *testing.T) {
	for _, line := range intactLines(t) {
		r := parseLine(t, line)
		cut := line[:len(line)-len(`,"hash":"`)-66] + "}"
		b, err := json.Marshal(Record{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Role: r.Role, Remote: r.Remote, Method: r.Method,
			Path: r.Path, Action: r.Action, Target: r.Target, Allowed: r.Allowed, Status: r.Status, Detail: r.Detail, Prev: r.Prev})
		if err != nil || string(b) != cut {
			t.Errorf("line without its hash:\n%s\nMarshal with Hash empty:\n%s", cut, b)
		}
	}
}
