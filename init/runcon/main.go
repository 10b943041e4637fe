// Command runcon runs a program in another SELinux context:
//
//	runcon [-u UID:GID] CONTEXT PROGRAM [ARGS...]
//
// It sets the context as its exec label and executes PROGRAM (looked up in
// PATH), so the kernel's policy decides whether the transition is allowed;
// with -u, as that user and group (without supplementary groups), so the
// program meets the file permissions a guest's QEMU meets.
// The debug image carries it; tests run processes in a guest's label with it.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const usage = "usage: runcon [-u UID:GID] CONTEXT PROGRAM [ARGS...]"

func main() {
	args := os.Args[1:]
	var ids *user
	var err error
	if len(args) > 0 && args[0] == "-u" {
		if len(args) < 2 {
			err = errors.New(usage)
		} else if ids, err = parseUser(args[1]); err == nil {
			args = args[2:]
		}
	}
	var ctx string
	var argv []string
	if err == nil {
		ctx, argv, err = parseArgs(args)
	}
	if err == nil {
		err = runcon(ctx, ids, argv)
	}
	fmt.Fprintf(os.Stderr, "runcon: %v\n", err)
	os.Exit(1)
}

// parseArgs splits the command line into the context and the program's argv.
func parseArgs(args []string) (context string, argv []string, err error) {
	if len(args) < 2 {
		return "", nil, errors.New(usage)
	}
	context = args[0]
	if strings.Count(context, ":") < 3 {
		return "", nil, fmt.Errorf("context %q: want user:role:type:level", context)
	}
	return context, args[1:], nil
}

// user is the identity -u asks for.
type user struct{ uid, gid int }

func parseUser(s string) (*user, error) {
	us, gs, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(us, 10, 31)
	gid, err2 := strconv.ParseUint(gs, 10, 31)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("-u %q: want UID:GID", s)
	}
	return &user{int(uid), int(gid)}, nil
}
