package cgroups

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"

	"hardvisor.dev/hardvisor/config"
)

func TestServiceResources(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   Limits
		want cgroup2.Resources
	}{
		{"defaults", Limits{}, cgroup2.Resources{
			Memory: &cgroup2.Memory{Max: ptr(int64(536870912))},
			CPU:    &cgroup2.CPU{Weight: ptr(uint64(100))},
			Pids:   &cgroup2.Pids{Max: 1024},
		}},
		{"all set", Limits{MemoryMin: 64 * config.Mi, MemoryMax: 256 * config.Mi, CPUWeight: 500, PIDsMax: 64}, cgroup2.Resources{
			Memory: &cgroup2.Memory{Min: ptr(int64(67108864)), Max: ptr(int64(268435456))},
			CPU:    &cgroup2.CPU{Weight: ptr(uint64(500))},
			Pids:   &cgroup2.Pids{Max: 64},
		}},
		{"partial", Limits{MemoryMax: config.Gi}, cgroup2.Resources{
			Memory: &cgroup2.Memory{Max: ptr(int64(1073741824))},
			CPU:    &cgroup2.CPU{Weight: ptr(uint64(100))},
			Pids:   &cgroup2.Pids{Max: 1024},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ServiceResources(tt.in)
			if d := diffResources(got, &tt.want); d != "" {
				t.Error(d)
			}
			if c := strings.Join(got.EnabledControllers(), " "); c != "cpu memory pids" {
				t.Errorf("controllers = %q, want %q", c, "cpu memory pids")
			}
		})
	}
}

func TestMachineResources(t *testing.T) {
	for _, tt := range []struct {
		name    string
		res     config.Resources
		m       Size
		wantMem int64
		wantCPU cgroup2.CPUMax
		wantErr string
	}{
		{
			name:    "from config",
			res:     config.Resources{Host: config.Capacity{Memory: 32 * config.Gi, CPUs: 8}, Reserve: config.Capacity{Memory: 2 * config.Gi, CPUs: 2}},
			m:       Size{Memory: 64 * config.Gi, CPUs: 16}, // ignored: the config says
			wantMem: 32212254720, wantCPU: "600000 100000",
		},
		{
			name:    "measured",
			res:     config.Resources{Reserve: config.Capacity{Memory: config.Gi, CPUs: 1}},
			m:       Size{Memory: 4 * config.Gi, CPUs: 4},
			wantMem: 3221225472, wantCPU: "300000 100000",
		},
		{
			name:    "mixed",
			res:     config.Resources{Host: config.Capacity{CPUs: 2}, Reserve: config.Capacity{Memory: 512 * config.Mi, CPUs: 1}},
			m:       Size{Memory: 2 * config.Gi, CPUs: 64},
			wantMem: 1610612736, wantCPU: "100000 100000",
		},
		{
			name:    "nothing left",
			res:     config.Resources{Reserve: config.Capacity{Memory: 4 * config.Gi, CPUs: 2}},
			m:       Size{Memory: 4 * config.Gi, CPUs: 2},
			wantMem: 0, wantCPU: "1000 100000",
			wantErr: "machine memory: host 4Gi minus reserve 4Gi leaves nothing for guests\nmachine cpus: host 2 minus reserve 2 leaves nothing for guests",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MachineResources(tt.res, tt.m)
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			want := &cgroup2.Resources{Memory: &cgroup2.Memory{Max: &tt.wantMem}, CPU: &cgroup2.CPU{Max: tt.wantCPU}}
			if d := diffResources(got, want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestSliceResources(t *testing.T) {
	got := SliceResources(config.Resources{Reserve: config.Capacity{Memory: config.Gi, CPUs: 1}})
	want := &cgroup2.Resources{Memory: &cgroup2.Memory{Min: ptr(int64(1073741824))}}
	if d := diffResources(got, want); d != "" {
		t.Error(d)
	}
}

func TestCheckReserve(t *testing.T) {
	res := config.Resources{Reserve: config.Capacity{Memory: 256 * config.Mi, CPUs: 1}}
	if err := CheckReserve(res, map[string]Limits{"a": {MemoryMin: 128 * config.Mi}, "b": {MemoryMin: 128 * config.Mi}}); err != nil {
		t.Errorf("exact fit: %v", err)
	}
	err := CheckReserve(res, map[string]Limits{
		"libvirtd": {MemoryMin: 200 * config.Mi},
		"mgmtd":    {MemoryMin: 100 * config.Mi, MemoryMax: 50 * config.Mi},
	})
	want := `service "mgmtd": memory.min 100Mi exceeds memory.max 50Mi` + "\n" +
		"services reserve 300Mi of memory (memory.min of libvirtd, mgmtd), more than resources.reserve.memory 256Mi"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestParse(t *testing.T) {
	n, err := ParseUint(strings.NewReader("123456\n"))
	if err != nil || n != 123456 {
		t.Errorf("ParseUint = %d, %v", n, err)
	}
	if _, err := ParseUint(strings.NewReader("max\n")); err == nil {
		t.Error("ParseUint(max): no error")
	}
	cpu, err := ParseCPUUsage(strings.NewReader("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"))
	if err != nil || cpu != 1500*time.Millisecond {
		t.Errorf("ParseCPUUsage = %v, %v", cpu, err)
	}
	if _, err := ParseCPUUsage(strings.NewReader("user_usec 1\n")); err == nil || err.Error() != "cpu.stat has no usage_usec" {
		t.Errorf("ParseCPUUsage without usage_usec: %v", err)
	}
}

// diffResources compares the fields this package sets, value by value.
func diffResources(got, want *cgroup2.Resources) string {
	var d []string
	f := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	mem := func(r *cgroup2.Resources) (min, max any) {
		if r.Memory == nil {
			return "no memory", "no memory"
		}
		return deref(r.Memory.Min), deref(r.Memory.Max)
	}
	gmin, gmax := mem(got)
	wmin, wmax := mem(want)
	f("memory.min", gmin, wmin)
	f("memory.max", gmax, wmax)
	cpu := func(r *cgroup2.Resources) (w, m any) {
		if r.CPU == nil {
			return "no cpu", "no cpu"
		}
		return deref(r.CPU.Weight), r.CPU.Max
	}
	gw, gm := cpu(got)
	ww, wm := cpu(want)
	f("cpu.weight", gw, ww)
	f("cpu.max", gm, wm)
	pids := func(r *cgroup2.Resources) any {
		if r.Pids == nil {
			return "no pids"
		}
		return r.Pids.Max
	}
	f("pids.max", pids(got), pids(want))
	return strings.Join(d, "\n")
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}
