package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// runCmd runs a host command (ip, iptables, ...) and reports its stderr on failure.
func runCmd(args ...string) error {
	_, err := output(args...)
	return err
}

// runQuiet runs a command whose failure is expected at times (removing what
// may not exist); it reports only whether it succeeded.
func runQuiet(args ...string) error {
	return exec.Command(args[0], args[1:]...).Run()
}

// output runs a command and returns its standard output.
func output(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
