// Package build runs the whole pipeline: config → plan → compile → root file
// system → initramfs → UKI (signed, if asked) → boot media (disk image, ISO,
// PXE bundle) → manifest and SBOM, into a fresh directory that replaces the
// output directory in one atomic step. An unchanged input set is served from
// the content-hash cache.
package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/image/cache"
	"hardvisor.dev/hardvisor/image/closure"
	"hardvisor.dev/hardvisor/image/compile"
	"hardvisor.dev/hardvisor/image/disk"
	"hardvisor.dev/hardvisor/image/hypervisor"
	"hardvisor.dev/hardvisor/image/initramfs"
	"hardvisor.dev/hardvisor/image/iso"
	"hardvisor.dev/hardvisor/image/kernel"
	"hardvisor.dev/hardvisor/image/manifest"
	"hardvisor.dev/hardvisor/image/mkfs"
	"hardvisor.dev/hardvisor/image/plan"
	"hardvisor.dev/hardvisor/image/pxe"
	"hardvisor.dev/hardvisor/image/rootfs"
	"hardvisor.dev/hardvisor/image/sbom"
	"hardvisor.dev/hardvisor/image/selinux"
	"hardvisor.dev/hardvisor/image/sign"
	"hardvisor.dev/hardvisor/image/uki"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
)

// The artifacts a build writes to its output directory.
const (
	UKI       = "hardvisor.efi"
	Kernel    = "vmlinuz"
	Initramfs = "initramfs.img"
	Cmdline   = "cmdline"
	SBOM      = "sbom.spdx.json"
	// DiskImage is the USB/disk image (GPT, ESP with systemd-boot and the UKI).
	DiskImage = "hardvisor.img"
	// ISO is the El Torito EFI image for virtual media.
	ISO = "hardvisor.iso"
	// PXEDir is the network boot bundle's directory.
	PXEDir = pxe.Dir
)

// mediaFormat names the layout of the boot media; changing what the media
// stage writes must change it, so cached outputs of older layouts are not
// served.
const mediaFormat = "media 1: gpt esp=256MiB sd-boot +3; iso eltorito-efi; pxe"

const artifactsKind = "artifacts"

// Options are a build's inputs beyond the config file.
type Options struct {
	// ConfigPath is the config file; empty builds the embedded default config.
	ConfigPath string
	// OutDir receives the artifacts.
	OutDir string
	// Profile overrides the config's profile ("production" or "debug").
	Profile string
	// KernelPath is a kernel image to use instead of the newest Debian kernel package.
	KernelPath string
	// SourceDir is the hardvisor source tree that PID 1 is compiled from.
	SourceDir string
	// Cache is the content-hash cache.
	Cache cache.Cache
	// Compression of the initramfs.
	Compression initramfs.Compression
	// Payload is how an image with guests carries QEMU and libvirt
	// (hypervisor.Squashfs, the default, or hypervisor.Initramfs).
	Payload string
	// Epoch is SOURCE_DATE_EPOCH: the one timestamp that appears in artifacts.
	Epoch int64
	// Stub is systemd's EFI stub; empty means Debian's.
	Stub string
	// DpkgDir is the dpkg database; empty means /var/lib/dpkg.
	DpkgDir string
	// Bootloader is systemd-boot's EFI binary; empty means Debian's
	// (package systemd-boot-efi).
	Bootloader string
	// SignKey and SignCert, both or neither, are the PEM private key and
	// certificate that sign systemd-boot and the UKI for Secure Boot. They are
	// checked before anything is written.
	SignKey, SignCert string
	// Progress receives a line per stage; nil discards.
	Progress io.Writer
}

// Result tells what a build did.
type Result struct {
	Manifest *manifest.Manifest
	// Cached is true when the artifacts came from the cache unchanged.
	Cached bool
}

// Run builds. On any error the output directory is left as it was.
func Run(opts Options) (*Result, error) {
	p := &progress{w: opts.Progress, start: time.Now()}
	if opts.Compression == "" {
		opts.Compression = initramfs.Zstd
	}
	if opts.Stub == "" {
		opts.Stub = uki.DefaultStub
	}
	if opts.Payload == "" {
		opts.Payload = hypervisor.Squashfs
	}
	if !slices.Contains(hypervisor.Layouts, opts.Payload) {
		return nil, fmt.Errorf("payload layout %q: want one of %s", opts.Payload, strings.Join(hypervisor.Layouts, ", "))
	}
	if opts.DpkgDir == "" {
		opts.DpkgDir = "/var/lib/dpkg"
	}
	if opts.Bootloader == "" {
		opts.Bootloader = disk.DefaultBootloader
	}
	var signer *sign.Signer
	if opts.SignKey != "" || opts.SignCert != "" {
		var err error
		if signer, err = sign.Load(opts.SignKey, opts.SignCert); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(opts.Bootloader); err != nil {
		return nil, fmt.Errorf("systemd-boot %s missing: apt-get install systemd-boot-efi", opts.Bootloader)
	}
	var cfg *config.Config
	var err error
	if opts.ConfigPath == "" {
		cfg = config.LoadDefault()
	} else if cfg, err = config.Load(opts.ConfigPath); err != nil {
		return nil, err
	}
	pl, err := plan.New(cfg, plan.Options{Profile: opts.Profile, Kernel: kernel.FindOptions{Path: opts.KernelPath}})
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.Stub); err != nil {
		return nil, fmt.Errorf("EFI stub %s missing: apt-get install systemd-boot-efi", opts.Stub)
	}
	unused := ""
	if len(pl.Unused) > 0 {
		unused = " (left out, as no guest or guest network uses them: " + strings.Join(pl.Unused, ", ") + ")"
	}
	p.stage("plan", "version %s, profile %s, kernel %s, %d modules%s", cfg.Version, cfg.Profile, pl.Kernel.Release, len(pl.Modules.Order), unused)

	bb, err := compile.Busybox(compile.Options{SourceDir: opts.SourceDir, Packages: pl.Packages, Tags: pl.Tags, Cache: opts.Cache})
	if err != nil {
		return nil, err
	}
	p.stage("compile", "%d Go commands into one binary%s", len(bb.Commands), cachedNote(bb.Cached))

	cfgYAML, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	tree, payload, err := Assemble(pl, bb, cfgYAML)
	if err != nil {
		return nil, err
	}
	if opts.Payload == hypervisor.Initramfs {
		payload = nil
	}
	if err := addAPIFiles(tree, cfg, filepath.Dir(opts.ConfigPath)); err != nil {
		return nil, err
	}
	if err := addGuestImages(tree, cfg, filepath.Dir(opts.ConfigPath)); err != nil {
		return nil, err
	}
	key, err := inputKey(bb.Key, tree, opts, pl, signer)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	dir, cached := opts.Cache.Lookup(artifactsKind, key)
	if cached {
		res.Cached = true
		p.stage("cache", "inputs unchanged (%s)", key[:12])
	} else {
		if dir, err = write(pl, bb, tree, payload, opts, key, signer, p); err != nil {
			return nil, err
		}
	}
	m, err := manifest.Read(dir)
	if err != nil {
		return nil, err
	}
	res.Manifest = m
	if err := publish(dir, opts.OutDir); err != nil {
		return nil, err
	}
	_ = opts.Cache.Prune(artifactsKind, 6)
	p.stage("done", "%s in %s", UKI, opts.OutDir)
	return res, nil
}

// Assemble lays out the host's root file system. When the config has guests
// it holds the hypervisor payload too, whose files only it needs are listed
// in payload (what the initramfs stage may pack into a squashfs).
func Assemble(pl *plan.Plan, bb *compile.Result, cfgYAML []byte) (t *rootfs.Tree, payload []rootfs.Entry, err error) {
	t = rootfs.New()
	if err := bb.AddTo(t); err != nil {
		return nil, nil, err
	}
	if err := pl.Modules.AddTo(t); err != nil {
		return nil, nil, err
	}
	// mke2fs formats the data partition on first boot; the config's
	// services bring their programs from the build host.
	spec := mkfs.Spec()
	progs, err := servicePrograms(pl.Config, t)
	if err != nil {
		return nil, nil, err
	}
	spec.Binaries = append(spec.Binaries, progs...)
	host, err := closure.Resolve(spec, closure.Options{})
	if err != nil {
		return nil, nil, err
	}
	if err := host.AddTo(t); err != nil {
		return nil, nil, err
	}
	if err := addPolicy(t, pl.Config.Security.SELinux); err != nil {
		return nil, nil, err
	}
	passwd, group := []string{"root:x:0:0:root:/:/bbin/false"}, []string{"root:x:0:"}
	if len(pl.Config.Guests) > 0 {
		if payload, err = addPayload(t); err != nil {
			return nil, nil, err
		}
		passwd = append(passwd, hypervisor.Passwd...)
		group = append(group, hypervisor.Group...)
	}
	initName := filepath.Base(plan.InitPackage)
	adds := []func() error{
		func() error { return t.AddSymlink("init", compile.BinDir+"/"+initName) },
		func() error { return t.AddData("etc/hardvisor/config.yaml", cfgYAML, 0o644) },
		func() error { return t.AddData("etc/os-release", plan.OSRelease(pl.Config), 0o644) },
		func() error { return t.AddData("etc/hardvisor/cmdline", []byte(pl.Cmdline+"\n"), 0o644) },
		func() error { return t.AddData("etc/passwd", []byte(strings.Join(passwd, "\n")+"\n"), 0o644) },
		func() error { return t.AddData("etc/group", []byte(strings.Join(group, "\n")+"\n"), 0o644) },
		func() error { return t.AddCharDev("dev/console", 0o600, 5, 1) },
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var"} {
		d := d
		adds = append(adds, func() error { return t.AddDir(d, 0o755) })
	}
	for _, add := range adds {
		if err := add(); err != nil {
			return nil, nil, err
		}
	}
	return t, payload, nil
}

// addPolicy compiles the SELinux policy and adds it to t, with the mode the
// host boots in.
func addPolicy(t *rootfs.Tree, mode string) error {
	dir, err := os.MkdirTemp("", "hardvisor-selinux-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := selinux.Build(dir, mode)
	if err != nil {
		return err
	}
	return p.AddTo(t)
}

// addPayload adds QEMU and libvirt to t and gives the files only they need.
func addPayload(t *rootfs.Tree) ([]rootfs.Entry, error) {
	c, err := hypervisor.Resolve()
	if err != nil {
		return nil, err
	}
	p := rootfs.New()
	if err := hypervisor.AddTo(p, c); err != nil {
		return nil, err
	}
	excl := hypervisor.Exclusive(p, t)
	if err := t.Merge(p); err != nil {
		return nil, err
	}
	return excl, nil
}

// addAPIFiles puts the management API's CA and server certificate and key
// (management.api.*, relative to the config file) into the image at
// catalog.PKIDir, after checking that the key matches the certificate and
// the certificate chains to the CA as a server certificate. The key is in
// the image: whoever can read the boot media can impersonate the API, so the
// media are to be kept like the key itself.
func addAPIFiles(t *rootfs.Tree, cfg *config.Config, dir string) error {
	api := cfg.Management.API
	if api.ClientCA == "" {
		return nil
	}
	read := func(field, p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("management.api.%s: %w", field, err)
		}
		return b, nil
	}
	ca, err := read("clientCA", api.ClientCA)
	if err != nil {
		return err
	}
	cert, err := read("serverCert", api.ServerCert)
	if err != nil {
		return err
	}
	key, err := read("serverKey", api.ServerKey)
	if err != nil {
		return err
	}
	if err := pki.CheckServer(cert, key, ca); err != nil {
		return fmt.Errorf("management.api: %w", err)
	}
	// The key is root's and readable by mgmtd's group alone.
	base := strings.TrimPrefix(catalog.PKIDir, "/")
	for _, f := range []struct {
		name string
		data []byte
		mode fs.FileMode
		gid  uint32
	}{{"ca.pem", ca, 0o644, 0}, {"server.pem", cert, 0o644, 0}, {"server-key.pem", key, 0o440, catalog.MgmtdGID}} {
		if err := t.Add(rootfs.Entry{Path: base + "/" + f.name, Kind: rootfs.File, Mode: f.mode, Data: f.data, GID: f.gid}); err != nil {
			return err
		}
	}
	return nil
}

// addGuestImages puts each guest's disk image (its template's image or its
// own, relative to the config file) into the image at
// config.GuestImagePath, where vmm copies it from to the guest's disk on
// its first start. An image must be a regular file no larger than the
// guest's disk size, when that is set.
func addGuestImages(t *rootfs.Tree, cfg *config.Config, dir string) error {
	for i, g := range cfg.GuestSpecs() {
		if g.Image == "" {
			continue
		}
		p := g.Image
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		field := fmt.Sprintf("guests[%d] (%s): image", i, g.Name)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", field, err)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("%s: %s is not a regular file", field, p)
		case g.Disk > 0 && fi.Size() > int64(g.Disk):
			return fmt.Errorf("%s: %s is %d bytes, more than the disk size %s", field, p, fi.Size(), g.Disk)
		}
		if err := t.AddFile(config.GuestImagePath(g.Name), p, 0o444); err != nil {
			return err
		}
	}
	return nil
}

// hostMounts are the directories PID 1 mounts file systems on
// (init/boot.EarlyMounts and the data partition): what the image holds
// below them is hidden on the running host.
var hostMounts = []string{"/proc", "/sys", "/dev", "/run", "/tmp", config.DataDir}

// coveredBy gives the host mount that hides image path p, or "".
func coveredBy(p string) string {
	for _, m := range hostMounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return m
		}
	}
	return ""
}

// servicePrograms lists the programs the config's services and their exec
// checks run that t does not hold yet: each must be a program on the build
// host, whose closure the image then carries at the same path.
func servicePrograms(cfg *config.Config, t *rootfs.Tree) ([]string, error) {
	var progs []string
	want := func(field, p string) error {
		if _, ok := t.Lookup(p); ok || slices.Contains(progs, p) {
			return nil
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %s is not in the image and not on the build host", field, p)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			return fmt.Errorf("%s: %s on the build host is not an executable file", field, p)
		}
		if m := coveredBy(p); m != "" {
			return fmt.Errorf("%s: %s is under %s, which the host mounts over at boot: install the program elsewhere", field, p, m)
		}
		progs = append(progs, p)
		return nil
	}
	for i, s := range cfg.Services {
		field := fmt.Sprintf("services[%d]", i)
		if err := want(field+".command[0]", s.Command[0]); err != nil {
			return nil, err
		}
		for _, pr := range []struct {
			name string
			p    *config.Probe
		}{{"ready", s.Ready}, {"health", s.Health}} {
			if pr.p != nil && len(pr.p.Exec) > 0 {
				if err := want(field+"."+pr.name+".exec[0]", pr.p.Exec[0]); err != nil {
					return nil, err
				}
			}
		}
	}
	slices.Sort(progs)
	return progs, nil
}

// inputKey hashes everything the artifacts depend on: the compiled binary's key
// (the source and toolchain), every file of the tree by content, the kernel,
// the stub, systemd-boot, the command line, the compression, the epoch, the
// media layout and the signing certificate.
func inputKey(compileKey string, t *rootfs.Tree, opts Options, pl *plan.Plan, signer *sign.Signer) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "compile %s\ncompression %s\npayload %s\nepoch %d\ncmdline %s\n%s\n", compileKey, opts.Compression, opts.Payload, opts.Epoch, pl.Cmdline, mediaFormat)
	if signer != nil {
		fmt.Fprintf(h, "signer %s\n", signer.SHA256)
	}
	for _, f := range []string{pl.Kernel.Image, opts.Stub, opts.Bootloader} {
		if err := hashFile(h, f); err != nil {
			return "", err
		}
	}
	for _, e := range t.Entries() {
		fmt.Fprintf(h, "%s %v %o %s %d:%d %d\n", e.Path, e.Kind, e.Mode, e.Target, e.Major, e.Minor, len(e.Data))
		h.Write(e.Data)
		if e.Source != "" {
			if err := hashFile(h, e.Source); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// write produces the artifacts into a cache entry and returns its directory.
func write(pl *plan.Plan, bb *compile.Result, t *rootfs.Tree, payload []rootfs.Entry, opts Options, key string, signer *sign.Signer, p *progress) (string, error) {
	dir, err := opts.Cache.TempDir(artifactsKind)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir) // a no-op once stored
	cpio, segments := t, []*rootfs.Tree(nil)
	if len(payload) > 0 {
		img, packed, err := hypervisor.Pack(t, payload, opts.Cache, opts.Epoch)
		if err != nil {
			return "", err
		}
		seg, err := hypervisor.Segment(img)
		if err != nil {
			return "", err
		}
		cpio, segments = packed, append(segments, seg)
		p.stage("payload", "%d files into %s", len(payload), hypervisor.ImagePath)
	}
	if err := writeInitramfs(filepath.Join(dir, Initramfs), cpio, segments, opts); err != nil {
		return "", err
	}
	p.stage("initramfs", "%d entries, %s", len(t.Entries()), opts.Compression)
	if err := copyFile(pl.Kernel.Image, filepath.Join(dir, Kernel)); err != nil {
		return "", fmt.Errorf("copy kernel: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, Cmdline), []byte(pl.Cmdline+"\n"), 0o644); err != nil {
		return "", err
	}
	sections, err := os.MkdirTemp(dir, "uki-")
	if err != nil {
		return "", err
	}
	if err := uki.Build(uki.Inputs{Stub: opts.Stub, Kernel: pl.Kernel.Image, Initramfs: filepath.Join(dir, Initramfs),
		Cmdline: pl.Cmdline, OSRelease: plan.OSRelease(pl.Config), Epoch: opts.Epoch}, filepath.Join(dir, UKI), sections); err != nil {
		return "", err
	}
	os.RemoveAll(sections)
	p.stage("uki", "%s", UKI)

	if err := writeMedia(dir, pl, opts, key, signer, p); err != nil {
		return "", err
	}

	dpkg, err := sbom.LoadDpkg(opts.DpkgDir)
	if err != nil {
		return "", err
	}
	own := map[string]bool{}
	for _, e := range t.Entries() {
		if e.Kind == rootfs.File && (e.Source == "" || strings.HasPrefix(e.Source, opts.Cache.Root)) {
			own[e.Path] = true
		}
	}
	doc, err := sbom.Generate(t, dpkg, sbom.Options{Name: "hardvisor-" + pl.Config.Version, Version: pl.Config.Version,
		Created: time.Unix(opts.Epoch, 0).UTC(), OwnFiles: own})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, SBOM), doc, 0o644); err != nil {
		return "", err
	}
	names := []string{UKI, Kernel, Initramfs, Cmdline, SBOM, DiskImage, ISO}
	for _, n := range []string{pxe.Kernel, pxe.Initramfs, pxe.UKI, pxe.Script} {
		names = append(names, PXEDir+"/"+n)
	}
	arts, err := manifest.HashFiles(dir, names)
	if err != nil {
		return "", err
	}
	m := &manifest.Manifest{
		Name: "hardvisor", Version: pl.Config.Version, Profile: pl.Config.Profile, Cmdline: pl.Cmdline,
		Compression: string(opts.Compression),
		Kernel: manifest.Kernel{Release: pl.Kernel.Release, Package: pl.Kernel.Package,
			PackageVersion: pl.Kernel.PackageVersion, Modules: len(pl.Modules.Order)},
		Components: components(dpkg, opts.Stub, bb),
		Artifacts:  arts,
		InputHash:  key,
	}
	if signer != nil {
		m.Signer = &manifest.Signer{Subject: signer.Subject, SHA256: signer.SHA256}
	}
	mb, err := m.Marshal()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, manifest.FileName), mb, 0o644); err != nil {
		return "", err
	}
	p.stage("manifest", "%s, %s", manifest.FileName, SBOM)
	return opts.Cache.Store(artifactsKind, key, dir)
}

// writeMedia signs the UKI in place and a copy of systemd-boot when a signer is
// given, then writes the disk image, the ISO and the PXE bundle into dir.
func writeMedia(dir string, pl *plan.Plan, opts Options, key string, signer *sign.Signer, p *progress) error {
	tmp, err := os.MkdirTemp(dir, "media-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ukiPath, bootloader := filepath.Join(dir, UKI), opts.Bootloader
	if signer != nil {
		signed := filepath.Join(tmp, UKI)
		if err := signer.Sign(ukiPath, signed); err != nil {
			return err
		}
		if err := os.Rename(signed, ukiPath); err != nil {
			return err
		}
		bootloader = filepath.Join(tmp, "systemd-bootx64.efi")
		if err := signer.Sign(opts.Bootloader, bootloader); err != nil {
			return err
		}
		p.stage("sign", "%s and systemd-boot signed by %s", UKI, signer.Subject)
	}
	ids := disk.DeriveIDs(key)
	if err := disk.Write(filepath.Join(dir, DiskImage), disk.Inputs{Version: pl.Config.Version, UKI: ukiPath,
		Bootloader: bootloader, Seed: key, Epoch: opts.Epoch}); err != nil {
		return err
	}
	if err := iso.Write(filepath.Join(dir, ISO), tmp, iso.Inputs{UKI: ukiPath, FATVolumeID: ids.VolumeID, Epoch: opts.Epoch}); err != nil {
		return err
	}
	if err := pxe.Write(dir, pxe.Inputs{Kernel: filepath.Join(dir, Kernel), Initramfs: filepath.Join(dir, Initramfs),
		UKI: ukiPath, Cmdline: pl.Cmdline}); err != nil {
		return err
	}
	p.stage("media", "%s, %s, %s/", DiskImage, ISO, PXEDir)
	return nil
}

// writeInitramfs writes t as a compressed archive, then each of segments as
// an uncompressed one after it.
func writeInitramfs(path string, t *rootfs.Tree, segments []*rootfs.Tree, opts Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw, err := initramfs.Compress(f, opts.Compression)
	if err != nil {
		f.Close()
		return err
	}
	if err := initramfs.WriteCPIO(zw, t, opts.Epoch); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	for _, seg := range segments {
		// The kernel reads an archive's headers at 4-byte offsets from
		// the start of the whole initramfs, and skips zeros between
		// archives.
		end, err := f.Seek(0, io.SeekCurrent)
		if err == nil {
			_, err = f.Write(make([]byte, (4-end%4)%4))
		}
		if err == nil {
			err = initramfs.WriteCPIO(f, seg, opts.Epoch)
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// components lists the versions of what went into the image besides the
// kernel: the EFI stub's package, the Go toolchain and the modules that
// provided the compiled commands (u-root's in the debug profile).
func components(d *sbom.Dpkg, stub string, bb *compile.Result) []manifest.Component {
	var cs []manifest.Component
	if pkg, ok := d.Owner(stub); ok {
		cs = append(cs, manifest.Component{Name: pkg.Name, Version: pkg.Version})
	}
	cs = append(cs, manifest.Component{Name: "go", Version: bb.GoVersion})
	mods := make([]string, 0, len(bb.Modules))
	for m := range bb.Modules {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	for _, m := range mods {
		cs = append(cs, manifest.Component{Name: m, Version: bb.Modules[m]})
	}
	return cs
}

func cachedNote(c bool) string {
	if c {
		return " (cached)"
	}
	return ""
}

type progress struct {
	w     io.Writer
	start time.Time
	last  time.Time
}

// stage prints one line per finished stage with the time it took, so a slow
// step shows itself.
func (p *progress) stage(name, format string, args ...any) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if p.last.IsZero() {
		p.last = p.start
	}
	fmt.Fprintf(p.w, "%-10s %5.1fs  %s\n", name, now.Sub(p.last).Seconds(), fmt.Sprintf(format, args...))
	p.last = now
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
