package qemu

import (
	"slices"
	"strings"
	"testing"
)

// common is the part of every argv that does not depend on the options
// below it, for state directory /run/vm.
func common(name, machine, accel string, extra ...string) []string {
	a := []string{
		"qemu-system-x86_64", "-name", name,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", machine, "-accel", accel,
	}
	a = append(a, extra...)
	return a
}

func TestArgs(t *testing.T) {
	t.Setenv("HARDVISOR_KVM", "")
	for _, tt := range []struct {
		name string
		opts Options
		want []string
	}{
		{
			name: "direct kernel boot",
			opts: Options{
				Name:     "floor",
				Kernel:   "/boot/vmlinuz",
				Initrd:   "/tmp/floor.cpio",
				Append:   "console=ttyS0 quiet",
				NoReboot: true,
				StateDir: "/run/vm",
			},
			want: append(common("floor", "q35", "tcg"),
				"-m", "512", "-smp", "1",
				"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
				"-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off",
				"-no-reboot",
				"-kernel", "/boot/vmlinuz", "-initrd", "/tmp/floor.cpio", "-append", "console=ttyS0 quiet",
			),
		},
		{
			name: "UEFI, two disks, two NICs",
			opts: Options{
				Name:     "uefi",
				Firmware: &Firmware{},
				Disks: []Disk{
					{Path: "/img/usb.img", Interface: USB, BootIndex: 1},
					{Path: "/img/data.qcow2", Format: QCOW2, Snapshot: true},
				},
				NICs: []NIC{
					{HostFwd: []string{"tcp:127.0.0.1:18443-:8443", "udp::5353-10.0.2.15:53"}, NoROM: true},
					{MAC: "52:54:00:aa:bb:cc", TFTP: "/srv/tftp", BootFile: "ipxe.efi", BootIndex: 2},
				},
				Memory:    2048,
				CPUs:      2,
				StateDir:  "/run/vm",
				ExtraArgs: []string{"-S"},
			},
			want: append(common("uefi", "q35", "tcg"),
				"-m", "2048", "-smp", "2",
				"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
				"-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
				"-drive", "if=pflash,format=raw,unit=1,file=/run/vm/OVMF_VARS.fd",
				"-drive", "file=/img/usb.img,format=raw,if=none,id=disk0",
				"-device", "qemu-xhci,id=xhci",
				"-device", "usb-storage,bus=xhci.0,drive=disk0,removable=on,bootindex=1",
				"-drive", "file=/img/data.qcow2,format=qcow2,if=none,id=disk1,snapshot=on",
				"-device", "virtio-blk-pci,drive=disk1",
				"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:18443-:8443,hostfwd=udp::5353-10.0.2.15:53",
				"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile=",
				"-netdev", "user,id=net1,tftp=/srv/tftp,bootfile=ipxe.efi",
				"-device", "virtio-net-pci,netdev=net1,mac=52:54:00:aa:bb:cc,bootindex=2",
				"-S",
			),
		},
		{
			name: "secure boot, IDE, CD-ROM, TAP",
			opts: Options{
				Firmware: SnakeoilFirmware(),
				Disks: []Disk{
					{Path: "/img/a,b.img", Interface: IDE, ReadOnly: true},
					{Path: "/img/hv.iso", Interface: CDROM, BootIndex: 1},
				},
				NICs:     []NIC{{TAP: "tap0", Model: "e1000"}},
				Machine:  "pc",
				CPU:      "max",
				StateDir: "/run/vm",
			},
			want: append(common("vm", "pc,smm=on", "tcg", "-cpu", "max"),
				"-m", "512", "-smp", "1",
				"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
				"-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off",
				"-global", "driver=cfi.pflash01,property=secure,value=on",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd",
				"-drive", "if=pflash,format=raw,unit=1,file=/run/vm/OVMF_VARS.fd",
				"-drive", "file=/img/a,,b.img,format=raw,if=none,id=disk0,readonly=on",
				"-device", "ide-hd,drive=disk0",
				"-drive", "file=/img/hv.iso,format=raw,if=none,id=disk1,readonly=on,media=cdrom",
				"-device", "ide-cd,drive=disk1,bootindex=1",
				"-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
				"-device", "e1000,netdev=net0,mac=52:54:00:12:34:56",
			),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestArgsAccel(t *testing.T) {
	opts := Options{Kernel: "/k", StateDir: "/s"}
	for _, tt := range []struct {
		env   string
		accel string
		want  []string // from -accel up to -m
	}{
		{env: "", want: []string{"-accel", "tcg"}},
		{env: "0", want: []string{"-accel", "tcg"}},
		{env: "1", want: []string{"-accel", "kvm", "-cpu", "host"}},
		{env: "1", accel: "tcg", want: []string{"-accel", "tcg"}},
		{env: "", accel: "kvm", want: []string{"-accel", "kvm", "-cpu", "host"}},
	} {
		t.Run("HARDVISOR_KVM="+tt.env+",accel="+tt.accel, func(t *testing.T) {
			t.Setenv("HARDVISOR_KVM", tt.env)
			o := opts
			o.Accel = tt.accel
			got, err := Args(o)
			if err != nil {
				t.Fatal(err)
			}
			i, j := slices.Index(got, "-accel"), slices.Index(got, "-m")
			if i < 0 || j < i || !slices.Equal(got[i:j], tt.want) {
				t.Errorf("Args = %q, want %q between -accel and -m", got, tt.want)
			}
		})
	}
}

func TestArgsErrors(t *testing.T) {
	_, err := Args(Options{
		Initrd: "/i",
		Accel:  "hvf",
		Memory: -1,
		Disks:  []Disk{{Format: "vmdk", Interface: "scsi"}},
		NICs: []NIC{
			{TAP: "tap0", HostFwd: []string{"tcp::1-:2"}},
			{MAC: "52:54:00", HostFwd: []string{"sctp::1-:2", "tcp::x-:22", "tcp::0-:0"}},
		},
	})
	if err == nil {
		t.Fatal("Args accepted invalid options")
	}
	want := []string{
		"initrd: needs kernel (direct kernel boot)",
		"memory: -1 MiB is negative",
		`accel: "hvf" is not tcg or kvm`,
		"stateDir: required (Start creates one when empty)",
		"disks[0].path: required",
		`disks[0].format: "vmdk" is not one of raw, qcow2`,
		`disks[0].interface: "scsi" is not one of virtio, usb, ide, cdrom`,
		`nics[0]: hostFwd, tftp and bootFile need user-mode networking, not tap "tap0"`,
		`nics[1].mac: "52:54:00" is not a 48-bit MAC address`,
		`nics[1].hostFwd[0]: "sctp::1-:2": protocol "sctp" is not tcp or udp`,
		`nics[1].hostFwd[1]: "tcp::x-:22": host side: port "x" is not a port number`,
		`nics[1].hostFwd[2]: "tcp::0-:0": guest side: port "0" is not a port number`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("Args error:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestArgsLongStateDir(t *testing.T) {
	_, err := Args(Options{StateDir: "/" + strings.Repeat("d", 100)})
	if err == nil || !strings.Contains(err.Error(), "longer than 107 bytes") {
		t.Errorf("Args with a 101-byte state directory: err = %v, want socket path too long", err)
	}
}
