// Package pxe writes the network boot bundle: the kernel, initramfs and UKI
// beside an iPXE script that boots them with the full canonical command line.
// The bundle uses relative URLs only, so it works from any HTTP root
// (`hardvisor serve`, or any web server).
package pxe

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Names inside the bundle. The kernel, initramfs and UKI keep the names they
// have in the build output (image/build cannot be imported here: it calls
// Write).
const (
	// Dir is the bundle's directory under the build output directory.
	Dir = "pxe"
	// Script is the iPXE script a DHCP server announces as the boot file.
	Script = "boot.ipxe"
	// Kernel, Initramfs and UKI are the copies of the build's artifacts.
	Kernel    = "vmlinuz"
	Initramfs = "initramfs.img"
	UKI       = "hardvisor.efi"
)

// Inputs are the built artifacts a bundle is made of.
type Inputs struct {
	// Kernel, Initramfs and UKI are host paths of the built files.
	Kernel, Initramfs, UKI string
	// Cmdline is the canonical kernel command line (the text, not a path);
	// surrounding white space is ignored.
	Cmdline string
}

// Write creates dir/pxe holding copies of the kernel, initramfs and UKI and
// the iPXE script boot.ipxe. An existing dir/pxe is replaced; on error it is
// left as it was. The output depends only on the inputs' contents.
func Write(dir string, in Inputs) error {
	script, err := ScriptFor(in.Cmdline)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".pxe-")
	if err != nil {
		return fmt.Errorf("pxe bundle: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("pxe bundle: %w", err)
	}
	for _, f := range []struct{ src, name string }{
		{in.Kernel, Kernel},
		{in.Initramfs, Initramfs},
		{in.UKI, UKI},
	} {
		if err := copyFile(f.src, filepath.Join(tmp, f.name)); err != nil {
			return fmt.Errorf("pxe bundle: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, Script), []byte(script), 0o644); err != nil {
		return fmt.Errorf("pxe bundle: %w", err)
	}
	dst := filepath.Join(dir, Dir)
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("pxe bundle: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("pxe bundle: %w", err)
	}
	return nil
}

// ScriptFor returns the iPXE script for the canonical command line cmdline.
// BIOS iPXE loads the kernel and initramfs; UEFI iPXE chains the UKI. Both
// pass the full command line: systemd's EFI stub (252) replaces the UKI's
// built-in command line with the loader's arguments when Secure Boot is
// off, so a chain without it would boot with none. (iPXE puts the image name
// in front of the arguments, so under UEFI the kernel also sees the harmless
// word "hardvisor.efi".) A command line that iPXE would alter (its
// expansion, quoting and operator characters, or white space other than
// single spaces) is an error.
func ScriptFor(cmdline string) (string, error) {
	cmdline = strings.TrimSpace(cmdline)
	if cmdline == "" {
		return "", fmt.Errorf("pxe bundle: cmdline is empty")
	}
	if strings.Contains(cmdline, "  ") {
		return "", fmt.Errorf("pxe bundle: cmdline %q: iPXE joins arguments with single spaces, so repeated spaces would be lost", cmdline)
	}
	for _, r := range cmdline {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`$"'\|&#`, r) {
			return "", fmt.Errorf("pxe bundle: cmdline %q: character %q would be interpreted by iPXE", cmdline, r)
		}
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# hardvisor network boot. Every line that loads a kernel or UKI carries the\n")
	b.WriteString("# full command line: systemd's EFI stub replaces the UKI's own with it.\n")
	b.WriteString("iseq ${platform} efi && goto uefi || goto bios\n")
	b.WriteString(":bios\n")
	fmt.Fprintf(&b, "kernel %s %s\n", Kernel, cmdline)
	fmt.Fprintf(&b, "initrd %s\n", Initramfs)
	b.WriteString("boot\n")
	b.WriteString(":uefi\n")
	fmt.Fprintf(&b, "chain %s %s\n", UKI, cmdline)
	return b.String(), nil
}

// copyFile copies src to dst (mode 0644) and gives dst src's modification
// time, so a copy is as reproducible as its source.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}
