// Package selinux is the host's SELinux policy: a small MCS policy of
// hardvisor's own (policy.cil), compiled at build time by secilc into the
// binary policy and file_contexts that PID 1 loads and applies at boot
// (init/boot's SELinux step), plus the files libvirt's sVirt driver reads to
// label guests.
//
// PID 1 and the host daemons it starts run unconfined in hv_host_t with the
// whole category range; the management API runs confined in hv_mgmt_t;
// guests run in svirt_t (KVM) or svirt_tcg_t (TCG) with a category pair that
// libvirt picks, and reach only images labeled with the same pair.
package selinux

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// policyCIL is the policy source; mcsCIL adds the categories.
//
//go:embed policy.cil
var policyCIL []byte

// Names and paths of the policy in the image.
const (
	// Type is the policy's name, SELINUXTYPE in ConfigPath.
	Type = "hardvisor"
	// PolicyVersion is the binary policy format the Debian 6.1 kernel loads.
	PolicyVersion = 33
	// ConfigPath is libselinux's configuration: the mode and the policy name.
	ConfigPath = "/etc/selinux/config"
	// Dir holds the policy and its contexts.
	Dir = "/etc/selinux/" + Type
	// PolicyPath is the binary policy PID 1 loads.
	PolicyPath = Dir + "/policy/policy.33"
	// FileContextsPath maps paths to labels: PID 1 relabels from it, libvirt
	// restores a guest's files from it.
	FileContextsPath = Dir + "/contexts/files/file_contexts"
	// VirtualDomainContextPath gives libvirt the guest process labels: KVM
	// then TCG.
	VirtualDomainContextPath = Dir + "/contexts/virtual_domain_context"
	// VirtualImageContextPath gives libvirt the guest image labels: read-write
	// then read-only content.
	VirtualImageContextPath = Dir + "/contexts/virtual_image_context"
	// Categories is the number of MCS categories, c0 to c1023.
	Categories = 1024
)

// Labels the policy defines.
const (
	// HostLabel is PID 1's (the kernel's initial SID): unconfined, with
	// every category, so that libvirtd, its child, may give guests any.
	HostLabel = "system_u:system_r:hv_host_t:s0-s0:c0.c1023"
	// MgmtLabel is the management API daemon's.
	MgmtLabel = "system_u:system_r:hv_mgmt_t:s0"
	// GuestLabel is a KVM guest's, before libvirt adds its categories.
	GuestLabel = "system_u:system_r:svirt_t:s0"
	// GuestTCGLabel is a TCG guest's: it may map writable memory executable.
	GuestTCGLabel = "system_u:system_r:svirt_tcg_t:s0"
	// ImageLabel is a guest's writable image, before libvirt adds its categories.
	ImageLabel = "system_u:object_r:svirt_image_t:s0"
	// ContentLabel is read-only content guests share.
	ContentLabel = "system_u:object_r:svirt_content_t:s0"
	// FileLabel is every file of the root file system not named otherwise.
	FileLabel = "system_u:object_r:hv_file_t:s0"
	// SecretLabel is the management API's server key.
	SecretLabel = "system_u:object_r:hv_secret_t:s0"
	// DataLabel is the data partition's files.
	DataLabel = "system_u:object_r:hv_data_t:s0"
)

// Modes PID 1 puts the policy in (config.Security.SELinux).
const (
	Enforcing  = "enforcing"
	Permissive = "permissive"
)

// Policy is the compiled policy and what goes into the image with it.
type Policy struct {
	// Mode is Enforcing or Permissive.
	Mode string
	// Binary is the kernel's binary policy (version PolicyVersion).
	Binary []byte
	// FileContexts is the file_contexts secilc wrote.
	FileContexts []byte
}

// errNoSecilc says what to install.
var errNoSecilc = errors.New("secilc missing: apt-get install secilc")

// Build compiles the policy with secilc in workDir, which it writes the
// sources and outputs to.
func Build(workDir, mode string) (*Policy, error) {
	return build(workDir, mode, policyCIL)
}

func build(workDir, mode string, src []byte) (*Policy, error) {
	if mode != Enforcing && mode != Permissive {
		return nil, fmt.Errorf("selinux mode %q: want %s or %s", mode, Enforcing, Permissive)
	}
	secilc, err := exec.LookPath("secilc")
	if err != nil {
		return nil, errNoSecilc
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	srcs := map[string][]byte{"mcs.cil": mcsCIL(), "policy.cil": src}
	for name, b := range srcs {
		if err := os.WriteFile(filepath.Join(workDir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	bin := filepath.Join(workDir, fmt.Sprintf("policy.%d", PolicyVersion))
	fc := filepath.Join(workDir, "file_contexts")
	cmd := exec.Command(secilc, "--mls=true", fmt.Sprintf("--policyvers=%d", PolicyVersion),
		"-o", bin, "-f", fc, "mcs.cil", "policy.cil")
	cmd.Dir = workDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile SELinux policy: secilc: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	p := &Policy{Mode: mode}
	if p.Binary, err = os.ReadFile(bin); err != nil {
		return nil, err
	}
	if p.FileContexts, err = os.ReadFile(fc); err != nil {
		return nil, err
	}
	if _, err := ParseFileContexts(strings.NewReader(string(p.FileContexts))); err != nil {
		return nil, fmt.Errorf("secilc's file_contexts: %w", err)
	}
	return p, nil
}

// mcsCIL declares the categories c0..c1023 of sensitivity s0.
func mcsCIL() []byte {
	var b strings.Builder
	b.WriteString("; Generated by image/selinux: the MCS categories.\n")
	names := make([]string, Categories)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
		fmt.Fprintf(&b, "(category %s)\n", names[i])
	}
	fmt.Fprintf(&b, "(categoryorder (%s))\n", strings.Join(names, " "))
	fmt.Fprintf(&b, "(sensitivitycategory s0 (range c0 c%d))\n", Categories-1)
	return []byte(b.String())
}

// Config is /etc/selinux/config for mode.
func Config(mode string) []byte {
	return []byte("SELINUX=" + mode + "\nSELINUXTYPE=" + Type + "\n")
}

// AddTo puts the policy into the image: libselinux's config, the binary
// policy, file_contexts and libvirt's guest contexts. It also adds /var/log,
// so that PID 1 labels it at boot (guests append to the logs libvirtd keeps
// there) rather than libvirtd creating it unlabeled later.
func (p *Policy) AddTo(t *rootfs.Tree) error {
	files := []struct {
		path string
		data []byte
	}{
		{ConfigPath, Config(p.Mode)},
		{PolicyPath, p.Binary},
		{FileContextsPath, p.FileContexts},
		{VirtualDomainContextPath, []byte(GuestLabel + "\n" + GuestTCGLabel + "\n")},
		{VirtualImageContextPath, []byte(ImageLabel + "\n" + ContentLabel + "\n")},
	}
	for _, f := range files {
		if err := t.AddData(f.path, f.data, 0o644); err != nil {
			return err
		}
	}
	return t.AddDir("var/log", fs.FileMode(0o755))
}
