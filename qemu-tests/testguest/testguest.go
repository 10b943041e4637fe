// Package testguest makes tiny guest disk images for tests: a 1 MiB raw
// disk whose first sectors hold 16-bit real-mode code assembled here byte
// by byte, which prints a marker line to COM1 and then idles, or first
// touches memory, or first sends Ethernet frames. The boot sector loads the
// sectors after it through the BIOS (int 13h) and jumps to them.
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
//	hardvisor-guest: NAME sent N frames from its MAC and N from 02:68:76:00:00:01   (ModeSpoof)
//	hardvisor-guest: NAME has no usable NIC (ModeSpoof, without a legacy virtio-net NIC)
//	hardvisor-guest: NAME powering off      (on the ACPI power button)
package testguest

import (
	"encoding/binary"
	"fmt"
	"net"
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
	// ModeSpoof sends Frames pairs of Ethernet broadcast frames through
	// the guest's legacy (transitional) virtio-net NIC on PCI bus 0: in
	// each pair one from the NIC's own MAC and one from ForgedMAC, both of
	// EtherType FrameType with the up line as payload. It reports them,
	// then idles.
	ModeSpoof
)

// ForgedMAC is the source MAC of ModeSpoof's forged frames: locally
// administered, "hv".
var ForgedMAC = [6]byte{0x02, 0x68, 0x76, 0x00, 0x00, 0x01}

// FrameType is the EtherType of ModeSpoof's frames: IEEE's local
// experimental 1.
const FrameType = 0x88b5

// MaxName is the longest name a guest may have.
const MaxName = 64

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
	// Frames is how many pairs of frames ModeSpoof sends.
	Frames int
}

// UpLine is the line a guest prints once it runs.
func UpLine(name string) string { return "hardvisor-guest: " + name + " up" }

// TouchedLine is the line a ModeHog guest prints once it touched its memory.
func TouchedLine(name string, mib int) string {
	return fmt.Sprintf("hardvisor-guest: %s touched %d MiB", name, mib)
}

// SentLine is the line a ModeSpoof guest prints once QEMU took all its
// frames.
func SentLine(name string, frames int) string {
	return fmt.Sprintf("hardvisor-guest: %s sent %d frames from its MAC and %d from %s", name, frames, frames, net.HardwareAddr(ForgedMAC[:]))
}

// NoNICLine is the line a ModeSpoof guest prints when it finds no legacy
// virtio-net NIC with a 256-entry transmit queue.
func NoNICLine(name string) string { return "hardvisor-guest: " + name + " has no usable NIC" }

// PoweringOffLine is the line a guest prints when the ACPI power button was
// pressed, before it powers off.
func PoweringOffLine(name string) string { return "hardvisor-guest: " + name + " powering off" }

// Image gives the guest's whole disk image (DiskSize bytes).
func (g Guest) Image() ([]byte, error) {
	code, err := g.code()
	if err != nil {
		return nil, err
	}
	img := make([]byte, DiskSize)
	copy(img, code)
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
	maxCode   = 8 * 512 // the boot sector and the sectors it loads

	// PCI configuration mechanism #1.
	pciAddr      = 0xcf8
	pciData      = 0xcfc
	virtioNetID  = 0x1000_1af4 // device 0x1000 (transitional net), vendor 0x1af4
	pciCommandIO = 0x05        // I/O space and bus master

	// Legacy virtio-pci registers, offsets in BAR 0 (I/O).
	vioGuestFeatures = 0x04
	vioQueuePFN      = 0x08
	vioQueueSize     = 0x0c
	vioQueueSelect   = 0x0e
	vioQueueNotify   = 0x10
	vioStatus        = 0x12
	vioMAC           = 0x14 // device config, while MSI-X is off
	txQueue          = 1
	txSize           = 256 // QEMU's default transmit queue size

	// The transmit ring in low memory (4 KiB aligned) and the two frames.
	ring     = 0x1000
	avail    = ring + 16*txSize // flags, idx, ring[256]
	used     = ring + 0x2000    // the next 4 KiB after avail
	frameOwn = 0x4000           // virtio-net header, then the frame
	frameBad = 0x4100           // its copy with ForgedMAC
	zeroEnd  = 0x4200           // ring and frames start zeroed
	netHdr   = 10               // struct virtio_net_hdr, no features
)

// code assembles the guest's code: the boot sector, with its signature,
// and the sectors it loads after it.
func (g Guest) code() ([]byte, error) {
	for _, r := range g.Name {
		if r < 0x20 || r > 0x7e {
			return nil, fmt.Errorf("testguest: name %q: printable ASCII only", g.Name)
		}
	}
	if len(g.Name) > MaxName {
		return nil, fmt.Errorf("testguest: name %q: %d characters, more than %d", g.Name, len(g.Name), MaxName)
	}
	if g.Mode == ModeHog && (g.HogMiB <= 0 || g.HogMiB > 3000) {
		return nil, fmt.Errorf("testguest: hog of %d MiB: want 1..3000", g.HogMiB)
	}
	if g.Mode == ModeSpoof && (g.Frames <= 0 || g.Frames > 10000) {
		return nil, fmt.Errorf("testguest: %d pairs of frames: want 1..10000", g.Frames)
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
	a.op("sti ; the BIOS's disk service may wait for interrupts", 0xfb)
	a.op("push dx ; DL: the boot drive", 0x52)

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

	// Load the sectors after this one to 0x7e00, where the code goes on.
	a.op("pop dx", 0x5a)
	a.fixups = append(a.fixups, fixup{at: len(a.b) + 1, size: 1, sectors: true})
	a.op("mov ax,0x0200+sectors ; read (AH=2) that many sectors", 0xb8, 0x00, 0x02)
	a.op("mov cx,2 ; cylinder 0, from sector 2", 0xb9, 0x02, 0x00)
	a.op("xor dh,dh ; head 0", 0x30, 0xf6)
	a.op("mov bx,0x7e00 ; to ES:BX", 0xbb, 0x00, 0x7e)
	a.op("int 0x13", 0xcd, 0x13)
	a.rel8("jc loadfail", 0x72, "loadfail")
	a.rel16("jmp main", 0xe9, "main")
	a.label("loadfail")
	a.addr16("mov si,msgLoad", []byte{0xbe}, "msgLoad")
	a.rel16("call puts", 0xe8, "puts")
	a.rel16("jmp dead", 0xe9, "dead")

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
	a.label("msgLoad")
	a.str("hardvisor-guest: " + g.Name + " cannot read its disk\r\n")
	if len(a.b) > 510 {
		return nil, fmt.Errorf("testguest: boot sector of %q is %d bytes, more than 510", g.Name, len(a.b))
	}
	for len(a.b) < 510 {
		a.b = append(a.b, 0)
	}
	a.op("boot signature", 0x55, 0xaa)
	a.label("main")

	// QEMU latches the power button only while PM1_EN enables it (no
	// SCI follows: ACPI mode, SCI_EN, stays off).
	a.op(fmt.Sprintf("mov dx,%#x ; PM1_EN", pm1En), 0xba, byte(pm1En&0xff), byte(pm1En>>8))
	a.op(fmt.Sprintf("mov ax,%#x ; PWRBTN_EN", pwrBtnSts), 0xb8, byte(pwrBtnSts&0xff), byte(pwrBtnSts>>8))
	a.op("out dx,ax", 0xef)

	// SeaBIOS's serial console writes the end of its own output ("..."
	// and the line break after "Booting from Hard Disk") lazily, from its
	// timer interrupt: let three ticks pass first, or that tail lands in
	// the middle of one of this guest's lines.
	a.op("sti", 0xfb)
	for range 3 {
		a.op("hlt ; until the next timer tick", 0xf4)
	}
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

	if g.Mode == ModeSpoof {
		g.spoof(&a)
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
	if g.Mode == ModeSpoof {
		a.label("msgSent")
		a.str(SentLine(g.Name, g.Frames) + "\r\n")
		a.label("msgNoNIC")
		a.str(NoNICLine(g.Name) + "\r\n")
		a.label("forged")
		a.op("ForgedMAC", ForgedMAC[:]...)
	}

	if len(a.b) > maxCode {
		return nil, fmt.Errorf("testguest: code of %q is %d bytes, more than %d", g.Name, len(a.b), maxCode)
	}
	return a.link()
}

// spoof emits ModeSpoof's code: find the NIC on PCI bus 0, set up its
// transmit queue, build the two frames and send them in turns, each once
// QEMU took the one before.
func (g Guest) spoof(a *asm) {
	imm16 := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	imm32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	port := func(reg byte, why string) { a.op("lea dx,[bp+reg] ; "+why, 0x8d, 0x56, reg) }

	// Every device (function 0) on bus 0, through configuration
	// mechanism #1, for the transitional virtio-net's vendor and device.
	a.op("mov ebx,0x80000000 ; enable, bus 0, device 0", append([]byte{0x66, 0xbb}, imm32(0x8000_0000)...)...)
	a.label("scan")
	a.op("mov eax,ebx", 0x66, 0x89, 0xd8)
	a.op("mov dx,0xcf8", append([]byte{0xba}, imm16(pciAddr)...)...)
	a.op("out dx,eax", 0x66, 0xef)
	a.op("mov dl,0xfc ; 0xcfc", 0xb2, pciData&0xff)
	a.op("in eax,dx ; device and vendor", 0x66, 0xed)
	a.op("cmp eax,virtioNetID", append([]byte{0x66, 0x3d}, imm32(virtioNetID)...)...)
	a.rel8("je found", 0x74, "found")
	a.op("add ebx,0x800 ; next device", append([]byte{0x66, 0x81, 0xc3}, imm32(0x800)...)...)
	a.op("cmp ebx,0x80010000 ; past device 31", append([]byte{0x66, 0x81, 0xfb}, imm32(0x8001_0000)...)...)
	a.rel8("jb scan", 0x72, "scan")
	a.label("nonic")
	a.addr16("mov si,msgNoNIC", []byte{0xbe}, "msgNoNIC")
	a.rel16("call puts", 0xe8, "puts")
	a.rel16("jmp idle", 0xe9, "idle")

	a.label("found")
	a.op("mov eax,ebx", 0x66, 0x89, 0xd8)
	a.op("or al,0x10 ; BAR 0", 0x0c, 0x10)
	a.op("mov dl,0xf8", 0xb2, pciAddr&0xff)
	a.op("out dx,eax", 0x66, 0xef)
	a.op("mov dl,0xfc", 0xb2, pciData&0xff)
	a.op("in eax,dx", 0x66, 0xed)
	a.op("and al,0xfc ; the I/O base", 0x24, 0xfc)
	a.op("mov bp,ax", 0x89, 0xc5)
	a.op("mov eax,ebx", 0x66, 0x89, 0xd8)
	a.op("or al,4 ; command", 0x0c, 0x04)
	a.op("mov dl,0xf8", 0xb2, pciAddr&0xff)
	a.op("out dx,eax", 0x66, 0xef)
	a.op("mov dl,0xfc", 0xb2, pciData&0xff)
	a.op("in ax,dx", 0xed)
	a.op("or al,5 ; I/O space, bus master", 0x0c, pciCommandIO)
	a.op("out dx,ax", 0xef)

	// Legacy virtio: reset, acknowledge, driver, no features; the
	// transmit queue's ring at 0x1000, zeroed with the frames after it.
	port(vioStatus, "status")
	a.op("xor al,al ; reset", 0x30, 0xc0)
	a.op("out dx,al", 0xee)
	a.op("mov al,1 ; ACKNOWLEDGE", 0xb0, 0x01)
	a.op("out dx,al", 0xee)
	a.op("mov al,3 ; and DRIVER", 0xb0, 0x03)
	a.op("out dx,al", 0xee)
	port(vioGuestFeatures, "guest features")
	a.op("xor eax,eax ; none", 0x66, 0x31, 0xc0)
	a.op("out dx,eax", 0x66, 0xef)
	port(vioQueueSelect, "queue select")
	a.op("mov ax,1 ; transmitq", append([]byte{0xb8}, imm16(txQueue)...)...)
	a.op("out dx,ax", 0xef)
	port(vioQueueSize, "queue size")
	a.op("in ax,dx", 0xed)
	a.op("cmp ax,256", append([]byte{0x3d}, imm16(txSize)...)...)
	a.rel8("jne nonic", 0x75, "nonic")
	a.op("mov di,ring", append([]byte{0xbf}, imm16(ring)...)...)
	a.op("mov cx,(zeroEnd-ring)/2", append([]byte{0xb9}, imm16((zeroEnd-ring)/2)...)...)
	a.op("xor ax,ax", 0x31, 0xc0)
	a.op("rep stosw", 0xf3, 0xab)
	port(vioQueuePFN, "queue PFN")
	a.op("mov eax,ring>>12", append([]byte{0x66, 0xb8}, imm32(ring>>12)...)...)
	a.op("out dx,eax", 0x66, 0xef)

	// The frame after its (zero) virtio-net header: broadcast, from the
	// NIC's MAC, FrameType, the up line; padded with zeros to 60 bytes.
	payload := len(UpLine(g.Name)) + 2
	frameLen := netHdr + max(60, 14+payload)
	a.op("mov di,frameOwn+netHdr", append([]byte{0xbf}, imm16(frameOwn+netHdr)...)...)
	a.op("mov ax,0xffff", 0xb8, 0xff, 0xff)
	a.op("stosw", 0xab)
	a.op("stosw", 0xab)
	a.op("stosw ; destination: broadcast", 0xab)
	port(vioMAC, "the NIC's MAC")
	a.op("mov cx,6", 0xb9, 0x06, 0x00)
	a.label("mac")
	a.op("in al,dx", 0xec)
	a.op("stosb", 0xaa)
	a.op("inc dx", 0x42)
	a.rel8("loop mac", 0xe2, "mac")
	a.op("mov ax,FrameType (big-endian)", append([]byte{0xb8}, byte(FrameType>>8), byte(FrameType&0xff))...)
	a.op("stosw", 0xab)
	a.addr16("mov si,msgUp", []byte{0xbe}, "msgUp")
	a.op("mov cx,payload", append([]byte{0xb9}, imm16(payload)...)...)
	a.op("rep movsb", 0xf3, 0xa4)
	// Its copy, from ForgedMAC.
	a.op("mov si,frameOwn", append([]byte{0xbe}, imm16(frameOwn)...)...)
	a.op("mov di,frameBad", append([]byte{0xbf}, imm16(frameBad)...)...)
	a.op("mov cx,128", 0xb9, 0x80, 0x00)
	a.op("rep movsw", 0xf3, 0xa5)
	a.op("mov di,frameBad+netHdr+6", append([]byte{0xbf}, imm16(frameBad+netHdr+6)...)...)
	a.addr16("mov si,forged", []byte{0xbe}, "forged")
	a.op("movsw", 0xa5)
	a.op("movsw", 0xa5)
	a.op("movsw", 0xa5)
	// Descriptor 0 is the own frame, 1 the forged one.
	for i, f := range []int{frameOwn, frameBad} {
		a.op("mov word [desc.addr],frame", append(append([]byte{0xc7, 0x06}, imm16(ring+16*i)...), imm16(f)...)...)
		a.op("mov word [desc.len],frameLen", append(append([]byte{0xc7, 0x06}, imm16(ring+16*i+8)...), imm16(frameLen)...)...)
	}
	port(vioStatus, "status")
	a.op("mov al,7 ; and DRIVER_OK", 0xb0, 0x07)
	a.op("out dx,al", 0xee)

	// Send: BX frames made available so far; descriptor BX&1 goes into
	// the avail ring, QEMU is notified, and the used ring's index must
	// catch up before the next.
	a.op("xor bx,bx", 0x31, 0xdb)
	a.label("send")
	a.op("mov ax,bx", 0x89, 0xd8)
	a.op("and ax,1", 0x25, 0x01, 0x00)
	a.op("mov si,bx", 0x89, 0xde)
	a.op("and si,0xff ; the ring's slot", 0x81, 0xe6, 0xff, 0x00)
	a.op("shl si,1", 0xd1, 0xe6)
	a.op("mov [si+avail.ring],ax", append([]byte{0x89, 0x84}, imm16(avail+4)...)...)
	a.op("inc bx", 0x43)
	a.op("mov [avail.idx],bx", append([]byte{0x89, 0x1e}, imm16(avail+2)...)...)
	port(vioQueueNotify, "queue notify")
	a.op("mov ax,1 ; transmitq", append([]byte{0xb8}, imm16(txQueue)...)...)
	a.op("out dx,ax", 0xef)
	a.label("sent")
	a.op("cmp [used.idx],bx", append([]byte{0x39, 0x1e}, imm16(used+2)...)...)
	a.rel8("jne sent", 0x75, "sent")
	a.op("cmp bx,2*frames", append([]byte{0x81, 0xfb}, imm16(2*g.Frames)...)...)
	a.rel8("jb send", 0x72, "send")
	a.addr16("mov si,msgSent", []byte{0xbe}, "msgSent")
	a.rel16("call puts", 0xe8, "puts")
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
	// sectors: the byte is how many sectors follow the boot sector.
	sectors bool
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
		if f.sectors {
			a.b[f.at] = byte((len(a.b) - 512 + 511) / 512)
			continue
		}
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
