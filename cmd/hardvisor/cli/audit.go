package cli

import (
	"flag"
	"fmt"
	"io"
	"os"

	"hardvisor.dev/hardvisor/services/mgmt/audit"
)

const auditUsage = "usage: hardvisor audit verify FILE [--head-seq N --head HASH]"

// runAudit is `hardvisor audit verify FILE [--head-seq N --head HASH]`:
// checks an audit log's hash chain and, given the head the API reported
// (or the newest record the remote syslog server holds), that the log
// still ends in it.
func runAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return &UsageError{Msg: auditUsage}
	}
	fs := newFlags("audit verify", stderr)
	headSeq := fs.Uint64("head-seq", 0, "seq of the expected head record (with --head)")
	head := fs.String("head", "", "hash of the expected head record, 64 hex digits (with --head-seq)")
	pos, help, err := parseInterspersed(fs, args[1:])
	if err != nil || help {
		return err
	}
	if len(pos) != 1 {
		return &UsageError{Msg: auditUsage}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["head-seq"] != set["head"] {
		return &UsageError{Msg: "audit verify: --head-seq and --head go together"}
	}
	if set["head"] && !audit.ValidHash(*head) {
		return &UsageError{Msg: fmt.Sprintf("audit verify: --head %q: want 64 lowercase hex digits", *head)}
	}
	path := pos[0]
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if !set["head"] {
		res, err := audit.Verify(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(stdout, "%s: %d records, chain intact, head %s\n", path, res.Records, res.Head)
		return nil
	}
	res, err := audit.VerifyAgainst(f, *headSeq, *head)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s: %d records, chain intact, head %s (expected head at seq %d matches)\n", path, res.Records, res.Head, *headSeq)
	return nil
}
