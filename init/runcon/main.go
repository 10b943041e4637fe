// Command runcon runs a program in another SELinux context:
//
//	runcon CONTEXT PROGRAM [ARGS...]
//
// It sets the context as its exec label and executes PROGRAM (looked up in
// PATH), so the kernel's policy decides whether the transition is allowed.
// The debug image carries it; tests run processes in a guest's label with it.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

const usage = "usage: runcon CONTEXT PROGRAM [ARGS...]"

func main() {
	ctx, argv, err := parseArgs(os.Args[1:])
	if err == nil {
		err = runcon(ctx, argv)
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
