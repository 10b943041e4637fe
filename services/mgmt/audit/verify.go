package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// VerifyResult is what Verify found in an intact log.
type VerifyResult struct {
	// Records is the number of records, which is also the head's seq.
	Records uint64
	// Head is the newest record's hash, Genesis for an empty log.
	Head string
}

// ChainError says where and how a log's chain is broken.
type ChainError struct {
	// Line is the 1-based line number the break was found on.
	Line int
	// Seq is the seq the line claims, when it is named in the message; 0
	// when the line could not be read or its seq is the problem.
	Seq uint64
	// Reason is what is wrong, and what it means.
	Reason string
}

// Error is "line N (seq S): reason", or "line N: reason" when Seq is 0.
func (e *ChainError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d (seq %d): %s", e.Line, e.Seq, e.Reason)
}

// Verify reads a whole log from r and checks that every line is a record
// in its canonical encoding, that its hash matches its content, that seq
// goes up from 1 by exactly 1 and that every prev is the hash of the record
// before. The first break found is returned as a *ChainError; the result
// then counts the records before it. A valid chain can still be missing its
// newest records or have been rewritten entirely: use VerifyAgainst when
// the head is known from elsewhere.
func Verify(r io.Reader) (VerifyResult, error) {
	c := checker{head: Genesis}
	err := scan(r, &c, nil)
	return VerifyResult{Records: c.seq, Head: c.head}, err
}

// VerifyAgainst is Verify, and then checks the log against an anchor kept
// elsewhere: the head (seq and hash) the API reported at some point, or the
// newest record the remote syslog server received. The log must still hold
// record headSeq with hash head; it may have grown since. This finds what
// the chain alone cannot: removed newest records and a rewritten chain.
// headSeq 0 with head Genesis is the empty log.
func VerifyAgainst(r io.Reader, headSeq uint64, head string) (VerifyResult, error) {
	c := checker{head: Genesis}
	at := ""
	if headSeq == 0 {
		at = Genesis
	}
	err := scan(r, &c, func(rec Record, _ int64, _ int) bool {
		if rec.Seq == headSeq {
			at = rec.Hash
		}
		return true
	})
	res := VerifyResult{Records: c.seq, Head: c.head}
	if err != nil {
		return res, err
	}
	if c.seq < headSeq {
		missing := "newest record was"
		if n := headSeq - c.seq; n > 1 {
			missing = fmt.Sprintf("newest %d records were", n)
		}
		return res, fmt.Errorf("the log ends at seq %d, before the expected head at seq %d: the %s removed", c.seq, headSeq, missing)
	}
	if at != head {
		return res, fmt.Errorf("seq %d has hash %s, not the expected head %s: the log was rewritten", headSeq, at, head)
	}
	return res, nil
}

// hashMember is how the last member of every line starts.
const hashMember = `,"hash":"`

// seal sets r.Hash from the rest of r and returns the record's line with
// its newline.
func seal(r *Record) ([]byte, error) {
	r.Hash = ""
	content, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	r.Hash = hex.EncodeToString(sum[:])
	line := make([]byte, 0, len(content)+len(hashMember)+len(r.Hash)+2)
	line = append(line, content[:len(content)-1]...)
	line = append(line, hashMember...)
	line = append(line, r.Hash...)
	return append(line, "\"}\n"...), nil
}

// scan reads lines from r and checks each with c; fn, when set, is given
// each good record with its offset in r and its length with the newline,
// and stops the scan by returning false.
func scan(r io.Reader, c *checker, fn func(rec Record, off int64, n int) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			if b[len(b)-1] != '\n' {
				c.line++
				return c.errorf(0, "no newline at the end: the last record is incomplete (the log was cut short, or a write was interrupted)")
			}
			rec, cerr := c.check(b[:len(b)-1])
			if cerr != nil {
				return cerr
			}
			if fn != nil && !fn(rec, off, len(b)) {
				return nil
			}
			off += int64(len(b))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", c.line+1, err)
		}
	}
}

// checker follows a chain one line at a time.
type checker struct {
	line int    // lines checked
	seq  uint64 // seq of the last good record
	head string // hash of the last good record
}

func (c *checker) errorf(seq uint64, format string, args ...any) error {
	return &ChainError{Line: c.line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
}

// check checks the next line b (without its newline) and returns its record.
func (c *checker) check(b []byte) (Record, error) {
	c.line++
	if len(b) == 0 {
		return Record{}, c.errorf(0, "empty line")
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, c.errorf(0, "not a valid record: %v", err)
	}
	// The line's own integrity comes first: an edited seq or prev is an
	// edit, not a deletion or a broken link.
	if !ValidHash(r.Hash) {
		return Record{}, c.errorf(r.Seq, "hash is not 64 lowercase hex digits: the record was edited")
	}
	if canon, err := json.Marshal(&r); err != nil || !bytes.Equal(canon, b) {
		return Record{}, c.errorf(r.Seq, "not in the canonical encoding: the record was edited")
	}
	content := append(b[:len(b)-len(hashMember)-len(r.Hash)-2:len(b)-len(hashMember)-len(r.Hash)-2], '}')
	if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != r.Hash {
		return Record{}, c.errorf(r.Seq, "hash does not match its content: the record was edited")
	}
	want := c.seq + 1
	switch {
	case r.Seq == want:
	case c.seq == 0 && r.Seq > want:
		return Record{}, c.errorf(0, "the log starts at seq %d, not 1: the oldest records were deleted", r.Seq)
	case r.Seq > want:
		what := "a record was"
		if n := r.Seq - want; n > 1 {
			what = fmt.Sprintf("%d records were", n)
		}
		return Record{}, c.errorf(0, "seq %d follows seq %d: %s deleted or moved", r.Seq, c.seq, what)
	default:
		return Record{}, c.errorf(0, "seq %d follows seq %d: records were moved or duplicated", r.Seq, c.seq)
	}
	if r.Prev != c.head {
		if c.seq == 0 {
			return Record{}, c.errorf(r.Seq, "prev is not 64 zeros, as the first record's must be")
		}
		return Record{}, c.errorf(r.Seq, "prev does not match the hash of line %d (seq %d): line %d was edited or replaced", c.line-1, c.seq, c.line-1)
	}
	c.seq, c.head = r.Seq, r.Hash
	return r, nil
}

// ValidHash reports whether s is written as a record's hash must be: 64
// lowercase hex digits.
func ValidHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := range len(s) {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}
