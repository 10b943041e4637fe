//go:build !linux

package main

import "errors"

func runcon(string, *user, []string) error { return errors.New("SELinux needs Linux") }
