package sbom

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// Options describe the document.
type Options struct {
	// Name names the document and is part of its namespace. Default
	// "hardvisor".
	Name string
	// Version is hardvisor's own version, given to the package that holds
	// the files the build generated.
	Version string
	// Created is the document's creation time. The builder passes
	// SOURCE_DATE_EPOCH so that the same inputs give the same bytes.
	Created time.Time
	// OwnFiles are image paths the build produced itself (compiled Go
	// binaries, generated configuration). Files with inline Data count as
	// such without being listed.
	OwnFiles map[string]bool
}

// OwnPackage is the name of the package that holds the files the build
// produced rather than took from Debian.
const OwnPackage = "hardvisor"

type document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      creationInfo   `json:"creationInfo"`
	Packages          []spdxPackage  `json:"packages"`
	Files             []spdxFile     `json:"files"`
	Relationships     []relationship `json:"relationships"`
}

type creationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                    string           `json:"name"`
	SPDXID                  string           `json:"SPDXID"`
	VersionInfo             string           `json:"versionInfo,omitempty"`
	Supplier                string           `json:"supplier"`
	DownloadLocation        string           `json:"downloadLocation"`
	FilesAnalyzed           bool             `json:"filesAnalyzed"`
	PackageVerificationCode verificationCode `json:"packageVerificationCode"`
	SourceInfo              string           `json:"sourceInfo,omitempty"`
	LicenseConcluded        string           `json:"licenseConcluded"`
	LicenseDeclared         string           `json:"licenseDeclared"`
	CopyrightText           string           `json:"copyrightText"`
	ExternalRefs            []externalRef    `json:"externalRefs,omitempty"`
}

type verificationCode struct {
	Value string `json:"packageVerificationCodeValue"`
}

type externalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxFile struct {
	FileName         string     `json:"fileName"`
	SPDXID           string     `json:"SPDXID"`
	Checksums        []checksum `json:"checksums"`
	LicenseConcluded string     `json:"licenseConcluded"`
	CopyrightText    string     `json:"copyrightText"`
	Comment          string     `json:"comment,omitempty"`
}

type checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

// group is one SPDX package being assembled.
type group struct {
	pkg   spdxPackage
	sha1s []string
	files []string // SPDX IDs
}

// Generate returns the SPDX 2.3 JSON document for tree t. Each regular file
// is assigned to the Debian package that owns its source (d may be nil on a
// host without dpkg), to OwnPackage if the build produced it, or else to no
// package, with a comment saying so. The same tree, database and options
// give the same bytes.
func Generate(t *rootfs.Tree, d *Dpkg, opts Options) ([]byte, error) {
	if opts.Created.IsZero() {
		return nil, errors.New("sbom: Options.Created is not set (pass SOURCE_DATE_EPOCH)")
	}
	if opts.Name == "" {
		opts.Name = "hardvisor"
	}
	own := map[string]bool{}
	for p := range opts.OwnFiles {
		c, err := rootfs.Clean(p)
		if err != nil {
			return nil, fmt.Errorf("sbom: own file: %w", err)
		}
		own[c] = true
	}

	ids := idSet{}
	groups := map[string]*group{}
	var (
		files []spdxFile
		rels  []relationship
		order []string // group keys in first-seen order, sorted later
	)
	groupFor := func(key string, mk func() spdxPackage) *group {
		g, ok := groups[key]
		if !ok {
			g = &group{pkg: mk()}
			groups[key] = g
			order = append(order, key)
		}
		return g
	}
	for _, e := range t.Entries() {
		if e.Kind != rootfs.File {
			continue
		}
		s1, s256, err := digest(e)
		if err != nil {
			return nil, fmt.Errorf("sbom: /%s: %w", e.Path, err)
		}
		f := spdxFile{
			FileName: "/" + e.Path,
			SPDXID:   ids.unique("SPDXRef-File-" + sanitize(e.Path)),
			Checksums: []checksum{
				{Algorithm: "SHA1", Value: s1},
				{Algorithm: "SHA256", Value: s256},
			},
			LicenseConcluded: noAssertion,
			CopyrightText:    noAssertion,
		}
		var g *group
		switch {
		case own[e.Path] || e.Source == "":
			g = groupFor("\x00own", func() spdxPackage {
				return spdxPackage{
					Name:        OwnPackage,
					SPDXID:      ids.unique("SPDXRef-Package-" + OwnPackage),
					VersionInfo: opts.Version,
					Supplier:    "Organization: " + OwnPackage,
				}
			})
		default:
			var p Package
			ok := false
			if d != nil {
				p, ok = d.Owner(e.Source)
			}
			if !ok {
				// The host path is left out: it may be a temporary one.
				f.Comment = "no installed Debian package owns this file's source and the build did not generate it"
				break
			}
			g = groupFor(p.ID(), func() spdxPackage { return debianPackage(p, ids) })
		}
		if g != nil {
			g.sha1s = append(g.sha1s, s1)
			g.files = append(g.files, f.SPDXID)
		} else {
			rels = append(rels, relationship{"SPDXRef-DOCUMENT", "DESCRIBES", f.SPDXID})
		}
		files = append(files, f)
	}

	var pkgs []spdxPackage
	for _, key := range order {
		g := groups[key]
		// Licences are not analysed (yet): say so rather than guess.
		g.pkg.LicenseConcluded, g.pkg.LicenseDeclared, g.pkg.CopyrightText = noAssertion, noAssertion, noAssertion
		if g.pkg.DownloadLocation == "" {
			g.pkg.DownloadLocation = noAssertion
		}
		g.pkg.FilesAnalyzed = true
		g.pkg.PackageVerificationCode = verificationCode{verification(g.sha1s)}
		pkgs = append(pkgs, g.pkg)
		rels = append(rels, relationship{"SPDXRef-DOCUMENT", "DESCRIBES", g.pkg.SPDXID})
		for _, id := range g.files {
			rels = append(rels, relationship{g.pkg.SPDXID, "CONTAINS", id})
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].SPDXID < pkgs[j].SPDXID })
	sort.Slice(rels, func(i, j int) bool {
		a, b := rels[i], rels[j]
		if a.Element != b.Element {
			return a.Element < b.Element
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Related < b.Related
	})
	if pkgs == nil {
		pkgs = []spdxPackage{}
	}
	if files == nil {
		files = []spdxFile{}
	}
	if rels == nil {
		rels = []relationship{}
	}

	doc := document{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        opts.Name,
		CreationInfo: creationInfo{
			Created:  opts.Created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: hardvisor"},
		},
		Packages:      pkgs,
		Files:         files,
		Relationships: rels,
	}
	// The namespace must be unique per document yet reproducible: derive
	// it from everything else the document says.
	body, err := marshal(doc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	doc.DocumentNamespace = "https://hardvisor.dev/spdx/" + sanitize(opts.Name) + "-" + hex.EncodeToString(sum[:16])
	return marshal(doc)
}

func marshal(doc document) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("sbom: encode: %w", err)
	}
	return b.Bytes(), nil
}

func debianPackage(p Package, ids idSet) spdxPackage {
	sp := spdxPackage{
		Name:             p.Name,
		SPDXID:           ids.unique("SPDXRef-Package-deb-" + sanitize(p.Name) + "-" + sanitize(p.Architecture)),
		VersionInfo:      p.Version,
		Supplier:         "Organization: Debian",
		DownloadLocation: noAssertion,
		ExternalRefs: []externalRef{{
			Category: "PACKAGE-MANAGER",
			Type:     "purl",
			Locator:  "pkg:deb/debian/" + purlEscape(p.Name) + "@" + purlEscape(p.Version) + "?arch=" + purlEscape(p.Architecture),
		}},
	}
	// Debian's security tracker keys advisories on the source package.
	sp.SourceInfo = "built from Debian source package " + p.Source + " " + p.SourceVersion
	return sp
}

// digest returns the SHA-1 and SHA-256 of a file entry's content. SPDX 2.3
// requires SHA-1 for files; SHA-256 is what anyone checks today.
func digest(e rootfs.Entry) (string, string, error) {
	h1, h256 := sha1.New(), sha256.New()
	w := io.MultiWriter(h1, h256)
	if e.Source == "" {
		w.Write(e.Data)
	} else {
		f, err := os.Open(e.Source)
		if err != nil {
			return "", "", err
		}
		defer f.Close()
		if _, err := io.Copy(w, f); err != nil {
			return "", "", err
		}
	}
	return hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h256.Sum(nil)), nil
}

// verification is SPDX's package verification code: the SHA-1 of the sorted,
// concatenated SHA-1s of the package's files (here: those in the image).
func verification(sha1s []string) string {
	s := append([]string(nil), sha1s...)
	sort.Strings(s)
	sum := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(sum[:])
}

// sanitize maps s to the characters SPDX allows in identifiers.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// idSet hands out SPDX identifiers, numbering any that sanitizing made
// equal ("a_b" and "a-b"). Entries are visited in sorted order, so the
// numbers are stable.
type idSet map[string]bool

func (s idSet) unique(id string) string {
	out := id
	for n := 2; s[out]; n++ {
		out = id + "-" + strconv.Itoa(n)
	}
	s[out] = true
	return out
}

// purlEscape percent-encodes a purl component, keeping the characters the
// purl spec leaves unencoded in names and versions.
func purlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_~:", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
