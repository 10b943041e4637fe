package qemutests

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"hardvisor.dev/hardvisor/image/build"
	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/manifest"
)

func sourceDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func epoch(t *testing.T) int64 {
	t.Helper()
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReproducible rebuilds the default config from scratch, with an empty
// cache so PID 1 is compiled again, and finds every artifact byte-identical to
// out/. A second build with that cache is served from it, still identical.
func TestReproducible(t *testing.T) {
	ref := outDir(t, "HARDVISOR_OUT")
	refM := readManifest(t, ref)
	c := cache.Cache{Root: t.TempDir()}
	for i, wantCached := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		res, err := build.Run(build.Options{OutDir: out, SourceDir: sourceDir(t), Cache: c, Epoch: epoch(t)})
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		if res.Cached != wantCached {
			t.Errorf("build %d: Cached = %v, want %v", i, res.Cached, wantCached)
		}
		for _, a := range refM.Artifacts {
			got, err := os.ReadFile(filepath.Join(out, a.Name))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(ref, a.Name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("build %d: %s differs from out/ (%d vs %d bytes)", i, a.Name, len(got), len(want))
			}
		}
		for _, name := range []string{manifest.FileName} {
			got, _ := os.ReadFile(filepath.Join(out, name))
			want, _ := os.ReadFile(filepath.Join(ref, name))
			if !bytes.Equal(got, want) {
				t.Errorf("build %d: %s differs from out/", i, name)
			}
		}
	}
}

// snapshot returns the relative paths and contents of the files under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameFiles(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: output has %d files, want %d", what, len(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s changed", what, name)
		}
	}
}

// TestFailedBuildKeepsOutput checks that bad input and a build killed half way
// leave the previous output directory exactly as it was.
func TestFailedBuildKeepsOutput(t *testing.T) {
	ref := outDir(t, "HARDVISOR_OUT")
	bin := filepath.Join(sourceDir(t), "bin", "hardvisor")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make test`", bin)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range snapshot(t, ref) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, out)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: hardvisor.dev/v1\nversion: one\nhost: {hostnam: x}\n"), 0o644)
	cmd := exec.Command(bin, "build", "-c", bad, "-o", out, "--cache", t.TempDir())
	cmd.Dir = sourceDir(t)
	stderr, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("build of an invalid config succeeded")
	}
	for _, want := range []string{"bad.yaml:2: version:", "bad.yaml:3: host: unknown field \"hostnam\""} {
		if !bytes.Contains(stderr, []byte(want)) {
			t.Errorf("invalid config: output lacks %q:\n%s", want, stderr)
		}
	}
	sameFiles(t, "invalid config", snapshot(t, out), before)

	cmd = exec.Command(bin, "build", "--kernel", "/nonexistent/vmlinuz", "-o", out, "--cache", t.TempDir())
	cmd.Dir = sourceDir(t)
	if msg, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(msg, []byte("/nonexistent/vmlinuz")) {
		t.Errorf("build with a missing kernel: err=%v, output %q should name the kernel", err, msg)
	}
	sameFiles(t, "missing kernel", snapshot(t, out), before)

	// Kill a cold build (empty cache: it has to compile) once it has planned and
	// is compiling PID 1.
	cmd = exec.Command(bin, "build", "-o", out, "--cache", t.TempDir())
	cmd.Dir = sourceDir(t)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	progress, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(progress)
	planned := false
	for !planned && sc.Scan() {
		planned = strings.HasPrefix(sc.Text(), "plan ")
	}
	if !planned {
		t.Fatalf("build never reported its plan stage")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err := cmd.Wait(); err == nil {
		t.Fatal("build finished before it could be killed")
	}
	sameFiles(t, "killed build", snapshot(t, out), before)
}
