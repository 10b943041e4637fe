//go:build !linux

package main

import "errors"

func run() error { return errors.New("floorinit runs only as PID 1 of a Linux kernel") }
