package boot

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ServicesStopDeadline bounds the services' stop on the way down; each
// service is killed after its own stop timeout well before.
const ServicesStopDeadline = 60 * time.Second

// PowerAction is what PID 1 was asked to do at the end of the host's life.
type PowerAction int

// The actions PID 1 knows.
const (
	PowerOff PowerAction = iota
	Reboot
)

func (a PowerAction) String() string {
	if a == Reboot {
		return "reboot"
	}
	return "poweroff"
}

// PowerEvents arms everything that can ask the host to go down, before the
// host reports ready so that no request is lost: SIGUSR2 or SIGPWR (poweroff),
// SIGTERM or Ctrl-Alt-Del, which the kernel turns into SIGINT (reboot), and the
// ACPI power button (poweroff), the way a BMC or `virsh shutdown` asks.
type PowerEvents struct{ Host *Host }

func (PowerEvents) String() string { return "power events" }

// Run starts listening; WaitForPowerAction receives what is asked.
func (s PowerEvents) Run() error {
	// Hand Ctrl-Alt-Del to PID 1 as SIGINT instead of an immediate kernel reboot.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("route Ctrl-Alt-Del to PID 1: %w", err)
	}
	ch := make(chan PowerAction, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGUSR2, unix.SIGPWR, unix.SIGTERM, unix.SIGINT)
	go func() {
		s := <-sig
		if s == unix.SIGUSR2 || s == unix.SIGPWR {
			ch <- PowerOff
		} else {
			ch <- Reboot
		}
	}()
	for _, dev := range powerButtons("/sys/class/input") {
		f, err := os.Open(dev)
		if err != nil {
			return fmt.Errorf("open power button: %w", err)
		}
		go watchPowerButton(f, ch)
	}
	s.Host.power = ch
	return nil
}

// WaitForPowerAction blocks until someone asks the host to go down. Without a
// PowerEvents step (a boot that failed before it) only signals are heard.
func WaitForPowerAction(h *Host) PowerAction {
	if h.power == nil {
		if err := (PowerEvents{Host: h}).Run(); err != nil {
			h.Logf("%v", err)
		}
	}
	return <-h.power
}

// powerButtons lists the event devices whose name says they are a power button.
func powerButtons(sysClassInput string) []string {
	names, _ := filepath.Glob(filepath.Join(sysClassInput, "event*", "device", "name"))
	var devs []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || !strings.Contains(string(b), "Power Button") {
			continue
		}
		devs = append(devs, "/dev/input/"+filepath.Base(filepath.Dir(filepath.Dir(n))))
	}
	return devs
}

const (
	evKey      = 1
	keyPower   = 116
	eventBytes = 24 // struct input_event on 64-bit: timeval(16) type(2) code(2) value(4)
)

func watchPowerButton(f *os.File, ch chan<- PowerAction) {
	defer f.Close()
	buf := make([]byte, eventBytes)
	for {
		if _, err := f.Read(buf); err != nil {
			return
		}
		typ := binary.LittleEndian.Uint16(buf[16:])
		code := binary.LittleEndian.Uint16(buf[18:])
		value := int32(binary.LittleEndian.Uint32(buf[20:]))
		if typ == evKey && code == keyPower && value == 1 {
			select {
			case ch <- PowerOff:
			default:
			}
			return
		}
	}
}

// Shutdown syncs and unmounts what PID 1 mounted, then powers off or reboots.
// It does not return.
func Shutdown(h *Host, a PowerAction) {
	h.Logf("%s: stopping services", a)
	h.StopServices(ServicesStopDeadline)
	h.Logf("%s: syncing disks", a)
	unix.Sync()
	if h.DataMounted != "" {
		if err := unix.Unmount(h.DataMounted, 0); err != nil {
			h.Logf("%s: unmount %s: %v", a, h.DataMounted, err)
		}
	}
	for i := len(EarlyMounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(EarlyMounts[i].Target, unix.MNT_DETACH)
	}
	unix.Sync()
	h.Logf("%s", a)
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	for {
		_ = unix.Reboot(cmd)
	}
}
