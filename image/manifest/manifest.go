// Package manifest describes a build's output: what version of what was built,
// from which components, and the size and SHA-256 of every artifact. Updates and
// media stages read it; CI publishes it beside the artifacts.
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// FileName is the manifest's name in the output directory.
const FileName = "manifest.json"

// Manifest is the record of one build.
type Manifest struct {
	Name        string      `json:"name"`
	Version     string      `json:"version"`
	Profile     string      `json:"profile"`
	Cmdline     string      `json:"cmdline"`
	Compression string      `json:"compression"`
	Kernel      Kernel      `json:"kernel"`
	Components  []Component `json:"components"`
	Artifacts   []Artifact  `json:"artifacts"`
	// InputHash is the content hash of every build input; equal hashes mean
	// byte-identical artifacts.
	InputHash string `json:"inputHash"`
	// Signer is who signed the EFI binaries (systemd-boot and the UKI) for
	// Secure Boot; nil when the build is unsigned.
	Signer *Signer `json:"signer,omitempty"`
}

// Signer identifies a Secure Boot signing certificate.
type Signer struct {
	// Subject is the certificate's subject.
	Subject string `json:"subject"`
	// SHA256 is the SHA-256 fingerprint of the DER certificate (hex).
	SHA256 string `json:"sha256"`
}

// Kernel says which kernel the image boots.
type Kernel struct {
	Release        string `json:"release"`
	Package        string `json:"package"`
	PackageVersion string `json:"packageVersion"`
	Modules        int    `json:"modules"`
}

// Component is one piece of software that went into the image.
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Artifact is one output file.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// HashFiles describes the named files of dir, sorted by name.
func HashFiles(dir string, names []string) ([]Artifact, error) {
	out := make([]Artifact, 0, len(names))
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		size, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", n, err)
		}
		out = append(out, Artifact{Name: filepath.ToSlash(n), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Marshal encodes m as indented JSON with a trailing newline.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Read loads the manifest of an output directory.
func Read(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, FileName), err)
	}
	return &m, nil
}

// Artifact returns the entry for name.
func (m *Manifest) Artifact(name string) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}
