// Package uki assembles a Unified Kernel Image (UAPI Type #2 boot loader entry):
// systemd's EFI stub with the kernel, initramfs, command line and os-release
// added as PE sections. Debian 12 has no ukify, so the sections are added with
// binutils' objcopy at addresses computed from the stub's own layout.
package uki

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// DefaultStub is where Debian's systemd-boot-efi package installs the stub.
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// Inputs are the parts of a UKI.
type Inputs struct {
	Stub      string // systemd EFI stub (PE)
	Kernel    string // bzImage
	Initramfs string
	Cmdline   string // the one canonical kernel command line
	OSRelease []byte // os-release(5) contents
	// Epoch is the PE header's timestamp (SOURCE_DATE_EPOCH).
	Epoch int64
}

// Section is one section to add: its name, the file holding its content and
// the address it is placed at.
type Section struct {
	Name string
	File string
	VMA  uint64
}

const align = 0x1000

// Layout places the sections after the stub's last section, each aligned, in
// the order .osrel .cmdline .linux .initrd: the stub expects .linux below .initrd.
func Layout(stubEnd uint64, files []Section, sizes []int64) []Section {
	out := make([]Section, len(files))
	next := alignUp(stubEnd)
	for i, s := range files {
		s.VMA = next
		out[i] = s
		next = alignUp(next + uint64(sizes[i]))
	}
	return out
}

func alignUp(v uint64) uint64 { return (v + align - 1) &^ (align - 1) }

// StubEnd returns the first address past the stub's sections (relative to its
// image base, which objcopy's --change-section-vma also uses).
func StubEnd(stub string) (uint64, error) {
	f, err := pe.Open(stub)
	if err != nil {
		return 0, fmt.Errorf("read EFI stub %s: %w", stub, err)
	}
	defer f.Close()
	var base uint64
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		base = h.ImageBase
	case *pe.OptionalHeader32:
		base = uint64(h.ImageBase)
	}
	var end uint64
	for _, s := range f.Sections {
		if e := base + uint64(s.VirtualAddress) + uint64(s.VirtualSize); e > end {
			end = e
		}
	}
	if end == 0 {
		return 0, fmt.Errorf("EFI stub %s has no sections", stub)
	}
	return end, nil
}

// Build writes the UKI to out. tmp is a directory for the small section files.
func Build(in Inputs, out, tmp string) error {
	if _, err := os.Stat(in.Stub); err != nil {
		return fmt.Errorf("EFI stub %s missing: apt-get install systemd-boot-efi: %w", in.Stub, err)
	}
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		return errors.New("objcopy not found: apt-get install binutils")
	}
	end, err := StubEnd(in.Stub)
	if err != nil {
		return err
	}
	osrel, cmdline := tmp+"/osrel", tmp+"/cmdline"
	if err := os.WriteFile(osrel, in.OSRelease, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cmdline, []byte(in.Cmdline), 0o644); err != nil {
		return err
	}
	files := []Section{{Name: ".osrel", File: osrel}, {Name: ".cmdline", File: cmdline},
		{Name: ".linux", File: in.Kernel}, {Name: ".initrd", File: in.Initramfs}}
	sizes := make([]int64, len(files))
	for i, s := range files {
		st, err := os.Stat(s.File)
		if err != nil {
			return err
		}
		sizes[i] = st.Size()
	}
	args := []string{}
	for _, s := range Layout(end, files, sizes) {
		args = append(args, "--add-section", s.Name+"="+s.File,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.Name, s.VMA))
	}
	args = append(args, in.Stub, out)
	var stderr bytes.Buffer
	cmd := exec.Command(objcopy, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("objcopy: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return normalizeHeader(out, uint32(in.Epoch))
}
