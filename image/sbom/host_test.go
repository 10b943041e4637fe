package sbom

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/image/closure"
	"hardvisor.dev/hardvisor/image/kernel"
	"hardvisor.dev/hardvisor/image/rootfs"
)

// TestGenerateHost builds a tree the way the builder will (a program's
// closure, kernel modules, generated files) from the build host's packages
// and checks that the SBOM traces every host file to a Debian package.
func TestGenerateHost(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("no dpkg database on this host")
	}
	d, err := LoadDpkg("/var/lib/dpkg")
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	c, err := closure.Resolve(closure.Spec{Binaries: []string{"/usr/bin/ls"}}, closure.Options{})
	if err != nil {
		t.Skip(err)
	}
	if err := c.AddTo(tree); err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Find(kernel.FindOptions{})
	if err == nil {
		ms, err := k.Modules([]string{"bridge", "ext4"})
		if err != nil {
			t.Fatal(err)
		}
		if err := ms.AddTo(tree); err != nil {
			t.Fatal(err)
		}
	} else if !strings.HasPrefix(err.Error(), "no Debian kernel found") {
		t.Fatal(err)
	}
	if err := tree.AddData("etc/hostname", []byte("hv\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, err := Generate(tree, d, Options{Version: "0.0.0", Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d bytes in %v", len(out), time.Since(start))

	var doc struct {
		Packages []struct{ Name, SPDXID, VersionInfo string }
		Files    []struct{ FileName, SPDXID, Comment string }
		Rels     []struct{ SpdxElementID, RelationshipType, RelatedSpdxElement string } `json:"relationships"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for _, r := range doc.Rels {
		if r.RelationshipType == "CONTAINS" {
			owner[r.RelatedSpdxElement] = r.SpdxElementID
		}
	}
	var errs []error
	for _, f := range doc.Files {
		if owner[f.SPDXID] == "" {
			errs = append(errs, errors.New(f.FileName+": "+f.Comment))
		}
		if strings.HasSuffix(f.FileName, "/libc.so.6") && !strings.HasPrefix(owner[f.SPDXID], "SPDXRef-Package-deb-libc6-") {
			errs = append(errs, errors.New(f.FileName+" is in "+owner[f.SPDXID]+", not libc6"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}
