// Package testguest makes tiny guest disk images for tests: a 1 MiB raw
// disk whose boot sector, 16-bit real-mode code assembled here byte by byte,
// prints a marker line to COM1 and then idles, or first touches memory.
//
// A guest boots under TCG in a few seconds (no kernel, no firmware beyond
// SeaBIOS) and answers an ACPI power button: while idle it polls the PM1
// status register of the PIIX4 or ICH9 power management block (SeaBIOS
// places it at I/O port 0x600), and when the button was pressed it prints
// PoweringOff and enters S5, so libvirt's DomainShutdown works on it.
//
// Lines printed (each ends in "\r\n"):
//
//	hardvisor-guest: NAME up
//	hardvisor-guest: NAME touched N MiB     (ModeHog only)
//	hardvisor-guest: NAME powering off      (on the ACPI power button)
package testguest

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Mode says what a guest does after its first line.
type Mode int

const (
	// ModeIdle halts, waking on the timer interrupt to check the power button.
	ModeIdle Mode = iota
	// ModeHog enters unreal (flat 4 GiB) mode, writes one byte to every
	// 4 KiB page of HogMiB MiB above 1 MiB, reports it, then idles.
	ModeHog
)

// DiskSize is the size of an image: 1 MiB.
const DiskSize = 1 << 20

// Guest describes a test guest.
type Guest struct {
	// Name is printed in every line; printable ASCII.
	Name string
	Mode Mode
	// HogMiB is how much memory ModeHog touches; the guest needs 1 MiB
	// more RAM than that.
	HogMiB int
}

// UpLine is the line a guest prints once it runs.
func UpLine(name string) string { return "hardvisor-guest: " + name + " up" }

// TouchedLine is the line a ModeHog guest prints once it touched its memory.
func TouchedLine(name string, mib int) string {
	return fmt.Sprintf("hardvisor-guest: %s touched %d MiB", name, mib)
}

// PoweringOffLine is the line a guest prints when the ACPI power button was
// pressed, before it powers off.
func PoweringOffLine(name string) string { return "hardvisor-guest: " + name + " powering off" }

// Image gives the guest's whole disk image (DiskSize bytes).
func (g Guest) Image() ([]byte, error) {
	bs, err := g.BootSector()
	if err != nil {
		return nil, err
	}
	img := make([]byte, DiskSize)
	copy(img, bs)
	return img, nil
}

// WriteFile writes the guest's disk image to path.
func (g Guest) WriteFile(path string) error {
	img, err := g.Image()
	if err != nil {
		return err
	}
	return os.WriteFile(path, img, 0o644)
}

// Ports and values used by the code.
const (
	com1      = 0x3f8 // COM1 data register (DLL with DLAB set)
	pmBase    = 0x600 // SeaBIOS's ACPI PM I/O base (PIIX4 and ICH9)
	pm1Sts    = pmBase + 0
	pm1En     = pmBase + 2
	pm1Cnt    = pmBase + 4
	pwrBtnSts = 0x0100 // PM1_STS.PWRBTN_STS, and PM1_EN.PWRBTN_EN
	slpS5     = 0x2000 // PM1_CNT: SLP_EN with SLP_TYP 0, QEMU's S5
	loadAddr  = 0x7c00 // where the BIOS loads the boot sector
	hogStart  = 0x100000
)

// BootSector assembles the guest's 512-byte boot sector.
func (g Guest) BootSector() ([]byte, error) {
	for _, r := range g.Name {
		if r < 0x20 || r > 0x7e {
			return nil, fmt.Errorf("testguest: name %q: printable ASCII only", g.Name)
		}
	}
	if g.Mode == ModeHog && (g.HogMiB <= 0 || g.HogMiB > 3000) {
		return nil, fmt.Errorf("testguest: hog of %d MiB: want 1..3000", g.HogMiB)
	}
	var a asm

	// Set up flat real mode: all segments 0, the stack below the sector.
	a.op("cli", 0xfa)
	a.op("xor ax,ax", 0x31, 0xc0)
	a.op("mov ds,ax", 0x8e, 0xd8)
	a.op("mov es,ax", 0x8e, 0xc0)
	a.op("mov ss,ax", 0x8e, 0xd0)
	a.op("mov sp,0x7c00", 0xbc, 0x00, 0x7c)
	a.op("cld", 0xfc)

	// 16550 UART on COM1: 115200 baud 8N1, FIFOs on, no interrupts.
	for _, w := range []struct {
		port  uint16
		value byte
		why   string
	}{
		{com1 + 1, 0x00, "IER: no interrupts"},
		{com1 + 3, 0x80, "LCR: DLAB on"},
		{com1 + 0, 0x01, "DLL: divisor 1 (115200 baud)"},
		{com1 + 1, 0x00, "DLM: 0"},
		{com1 + 3, 0x03, "LCR: 8N1, DLAB off"},
		{com1 + 2, 0xc7, "FCR: FIFOs on and cleared"},
		{com1 + 4, 0x03, "MCR: DTR and RTS"},
	} {
		a.op(fmt.Sprintf("mov dx,%#x", w.port), 0xba, byte(w.port), byte(w.port>>8))
		a.op(fmt.Sprintf("mov al,%#x", w.value), 0xb0, w.value)
		a.op("out dx,al ; "+w.why, 0xee)
	}

	// QEMU latches the power button only while PM1_EN enables it (no
	// SCI follows: ACPI mode, SCI_EN, stays off).
	a.op(fmt.Sprintf("mov dx,%#x ; PM1_EN", pm1En), 0xba, byte(pm1En&0xff), byte(pm1En>>8))
	a.op(fmt.Sprintf("mov ax,%#x ; PWRBTN_EN", pwrBtnSts), 0xb8, byte(pwrBtnSts&0xff), byte(pwrBtnSts>>8))
	a.op("out dx,ax", 0xef)

	a.addr16("mov si,msgUp", []byte{0xbe}, "msgUp")
	a.rel16("call puts", 0xe8, "puts")

	if g.Mode == ModeHog {
		// Fast A20 gate (port 0x92 bit 1; bit 0 would reset the machine).
		a.op("in al,0x92", 0xe4, 0x92)
		a.op("or al,2", 0x0c, 0x02)
		a.op("and al,0xfe", 0x24, 0xfe)
		a.op("out 0x92,al", 0xe6, 0x92)
		// Unreal mode: enter protected mode just long enough to load DS
		// with a 4 GiB flat data descriptor; back in real mode DS keeps
		// that limit, so 32-bit addresses through DS reach all memory.
		a.addr16("lgdt [gdtr]", []byte{0x0f, 0x01, 0x16}, "gdtr")
		a.op("mov eax,cr0", 0x0f, 0x20, 0xc0)
		a.op("or al,1 ; PE", 0x0c, 0x01)
		a.op("mov cr0,eax", 0x0f, 0x22, 0xc0)
		a.op("jmp short $+2 ; flush the prefetch queue", 0xeb, 0x00)
		a.op("mov bx,8 ; the flat data selector", 0xbb, 0x08, 0x00)
		a.op("mov ds,bx", 0x8e, 0xdb)
		a.op("and al,0xfe ; PE off", 0x24, 0xfe)
		a.op("mov cr0,eax", 0x0f, 0x22, 0xc0)
		a.op("jmp short $+2", 0xeb, 0x00)
		a.op("xor bx,bx", 0x31, 0xdb)
		a.op("mov ds,bx ; base 0, limit still 4 GiB", 0x8e, 0xdb)
		var start [4]byte
		binary.LittleEndian.PutUint32(start[:], hogStart)
		a.op("mov edi,0x100000", append([]byte{0x66, 0xbf}, start[:]...)...)
		a.addr16("mov ecx,[pages]", []byte{0x66, 0x8b, 0x0e}, "pages")
		a.label("touch")
		a.op("mov byte [edi],0xaa", 0x67, 0xc6, 0x07, 0xaa)
		a.op("add edi,0x1000", 0x66, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00)
		a.op("dec ecx", 0x66, 0x49)
		a.rel8("jnz touch", 0x75, "touch")
		a.addr16("mov si,msgTouched", []byte{0xbe}, "msgTouched")
		a.rel16("call puts", 0xe8, "puts")
	}

	// Idle: sleep until the next timer tick (SeaBIOS runs the PIT at
	// 18.2 Hz), then look at the power button's status bit, which QEMU
	// sets on an ACPI power-down request whether or not ACPI is enabled.
	a.label("idle")
	a.op("sti", 0xfb)
	a.op("hlt", 0xf4)
	a.op(fmt.Sprintf("mov dx,%#x ; PM1_STS", pm1Sts), 0xba, byte(pm1Sts&0xff), byte(pm1Sts>>8))
	a.op("in ax,dx", 0xed)
	a.op(fmt.Sprintf("test ax,%#x ; PWRBTN_STS", pwrBtnSts), 0xa9, byte(pwrBtnSts&0xff), byte(pwrBtnSts>>8))
	a.rel8("jz idle", 0x74, "idle")
	a.addr16("mov si,msgOff", []byte{0xbe}, "msgOff")
	a.rel16("call puts", 0xe8, "puts")
	a.op(fmt.Sprintf("mov dx,%#x ; PM1_CNT", pm1Cnt), 0xba, byte(pm1Cnt&0xff), byte(pm1Cnt>>8))
	a.op(fmt.Sprintf("mov ax,%#x ; SLP_EN, S5", slpS5), 0xb8, byte(slpS5&0xff), byte(slpS5>>8))
	a.op("out dx,ax", 0xef)
	a.label("dead")
	a.op("cli", 0xfa)
	a.op("hlt", 0xf4)
	a.rel8("jmp short dead", 0xeb, "dead")

	// puts: write the NUL-terminated string at DS:SI to COM1, waiting
	// for the transmitter holding register to empty before each byte.
	a.label("puts")
	a.op("lodsb", 0xac)
	a.op("test al,al", 0x84, 0xc0)
	a.rel8("jz puts.done", 0x74, "puts.done")
	a.op("mov ah,al", 0x88, 0xc4)
	a.op("mov dx,0x3fd ; LSR", 0xba, 0xfd, 0x03)
	a.label("puts.wait")
	a.op("in al,dx", 0xec)
	a.op("test al,0x20 ; THRE", 0xa8, 0x20)
	a.rel8("jz puts.wait", 0x74, "puts.wait")
	a.op("mov al,ah", 0x88, 0xe0)
	a.op("mov dx,0x3f8", 0xba, 0xf8, 0x03)
	a.op("out dx,al", 0xee)
	a.rel8("jmp short puts", 0xeb, "puts")
	a.label("puts.done")
	a.op("ret", 0xc3)

	// Data.
	a.align(8)
	a.label("gdt")
	a.op("null descriptor", 0, 0, 0, 0, 0, 0, 0, 0)
	a.op("0x08: data, base 0, limit 4 GiB (G), present, writable", 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00)
	a.label("gdtr")
	a.op("limit: two descriptors", 0x0f, 0x00)
	a.addr32("base: gdt", "gdt")
	a.label("pages")
	var pages [4]byte
	binary.LittleEndian.PutUint32(pages[:], uint32(g.HogMiB*256))
	a.op("pages to touch", pages[:]...)
	a.label("msgUp")
	a.str(UpLine(g.Name) + "\r\n")
	a.label("msgTouched")
	a.str(TouchedLine(g.Name, g.HogMiB) + "\r\n")
	a.label("msgOff")
	a.str(PoweringOffLine(g.Name) + "\r\n")

	code, err := a.link()
	if err != nil {
		return nil, err
	}
	if len(code) > 510 {
		return nil, fmt.Errorf("testguest: boot sector of %q is %d bytes, more than 510", g.Name, len(code))
	}
	sector := make([]byte, 512)
	copy(sector, code)
	sector[510], sector[511] = 0x55, 0xaa // boot signature
	return sector, nil
}

// asm collects machine code with labels; the comments are the source.
type asm struct {
	b      []byte
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at    int // where the field is
	size  int // 1 (rel8), 2 (rel16 or abs16) or 4 (abs32)
	rel   bool
	label string
}

// op emits bytes; the comment is the instruction they encode.
func (a *asm) op(comment string, b ...byte) {
	_ = comment
	a.b = append(a.b, b...)
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.b)
}

// rel8 emits a short jump opcode and its 8-bit displacement to label.
func (a *asm) rel8(comment string, opcode byte, label string) {
	a.op(comment, opcode)
	a.fixups = append(a.fixups, fixup{at: len(a.b), size: 1, rel: true, label: label})
	a.b = append(a.b, 0)
}

// rel16 emits a near call or jump opcode and its 16-bit displacement.
func (a *asm) rel16(comment string, opcode byte, label string) {
	a.op(comment, opcode)
	a.fixups = append(a.fixups, fixup{at: len(a.b), size: 2, rel: true, label: label})
	a.b = append(a.b, 0, 0)
}

// addr16 emits an instruction's bytes followed by label's 16-bit address.
func (a *asm) addr16(comment string, prefix []byte, label string) {
	a.op(comment, prefix...)
	a.fixups = append(a.fixups, fixup{at: len(a.b), size: 2, label: label})
	a.b = append(a.b, 0, 0)
}

// addr32 emits label's 32-bit linear address.
func (a *asm) addr32(comment, label string) {
	_ = comment
	a.fixups = append(a.fixups, fixup{at: len(a.b), size: 4, label: label})
	a.b = append(a.b, 0, 0, 0, 0)
}

func (a *asm) str(s string) { a.b = append(append(a.b, s...), 0) }

func (a *asm) align(n int) {
	for len(a.b)%n != 0 {
		a.b = append(a.b, 0x90) // nop
	}
}

// link resolves the fixups.
func (a *asm) link() ([]byte, error) {
	for _, f := range a.fixups {
		target, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("testguest: no label %q", f.label)
		}
		switch {
		case f.rel && f.size == 1:
			d := target - (f.at + 1)
			if d < -128 || d > 127 {
				return nil, fmt.Errorf("testguest: jump to %s out of rel8 range (%d)", f.label, d)
			}
			a.b[f.at] = byte(int8(d))
		case f.rel && f.size == 2:
			binary.LittleEndian.PutUint16(a.b[f.at:], uint16(int16(target-(f.at+2))))
		case f.size == 2:
			binary.LittleEndian.PutUint16(a.b[f.at:], uint16(loadAddr+target))
		case f.size == 4:
			binary.LittleEndian.PutUint32(a.b[f.at:], uint32(loadAddr+target))
		}
	}
	return a.b, nil
}
