package cgroups

import (
	"slices"
	"strings"
	"testing"
	"time"

	"hardvisor.dev/hardvisor/config"
)

func TestServiceResources(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   Limits
		want Resources
	}{
		{"defaults", Limits{}, Resources{{"memory.max", "536870912"}, {"cpu.weight", "100"}, {"pids.max", "1024"}}},
		{"all set", Limits{MemoryMin: 64 * config.Mi, MemoryMax: 256 * config.Mi, CPUWeight: 500, PIDsMax: 64},
			Resources{{"memory.max", "268435456"}, {"memory.min", "67108864"}, {"cpu.weight", "500"}, {"pids.max", "64"}}},
		{"partial", Limits{MemoryMax: config.Gi}, Resources{{"memory.max", "1073741824"}, {"cpu.weight", "100"}, {"pids.max", "1024"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ServiceResources(tt.in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			if c := strings.Join(got.Controllers(), " "); c != "memory cpu pids" {
				t.Errorf("controllers = %q, want %q", c, "memory cpu pids")
			}
		})
	}
}

func TestMachineResources(t *testing.T) {
	for _, tt := range []struct {
		name    string
		res     config.Resources
		m       Size
		wantMem string
		wantCPU string
		wantErr string
	}{
		{
			name:    "from config",
			res:     config.Resources{Host: config.Capacity{Memory: 32 * config.Gi, CPUs: 8}, Reserve: config.Capacity{Memory: 2 * config.Gi, CPUs: 2}},
			m:       Size{Memory: 64 * config.Gi, CPUs: 16}, // ignored: the config says
			wantMem: "32212254720", wantCPU: "600000 100000",
		},
		{
			name:    "measured",
			res:     config.Resources{Reserve: config.Capacity{Memory: config.Gi, CPUs: 1}},
			m:       Size{Memory: 4 * config.Gi, CPUs: 4},
			wantMem: "3221225472", wantCPU: "300000 100000",
		},
		{
			name:    "mixed",
			res:     config.Resources{Host: config.Capacity{CPUs: 2}, Reserve: config.Capacity{Memory: 512 * config.Mi, CPUs: 1}},
			m:       Size{Memory: 2 * config.Gi, CPUs: 64},
			wantMem: "1610612736", wantCPU: "100000 100000",
		},
		{
			name:    "nothing left",
			res:     config.Resources{Reserve: config.Capacity{Memory: 4 * config.Gi, CPUs: 2}},
			m:       Size{Memory: 4 * config.Gi, CPUs: 2},
			wantMem: "0", wantCPU: "1000 100000",
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
			if want := (Resources{{"memory.max", tt.wantMem}, {"cpu.max", tt.wantCPU}}); !slices.Equal(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestSliceResources(t *testing.T) {
	got := SliceResources(config.Resources{Reserve: config.Capacity{Memory: config.Gi, CPUs: 1}})
	if want := (Resources{{"memory.min", "1073741824"}}); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
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
