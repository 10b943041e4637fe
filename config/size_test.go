package config

import (
	"math"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"4096", 4096},
		{"512Mi", 512 << 20},
		{"8Gi", 8 << 30},
		{"1Ki", 1024},
		{"2Ti", 2 << 40},
		{"1Pi", 1 << 50},
		{"7Ei", 7 << 60},
		{"1K", 1000},
		{"100M", 100e6},
		{"1G", 1e9},
		{"3T", 3e12},
		{"1P", 1e15},
		{"9E", 9e18},
		{"9223372036854775807", math.MaxInt64},
	} {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "Mi", "-1", "+1", "1.5Gi", "1 Gi", "1gi", "1MB", "1GiB", "0x10", "8Ei", "10E", "9223372036854775808"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   Size
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1000, "1000"},
		{1024, "1Ki"},
		{1536, "1536"},
		{1536 * Ki, "1536Ki"},
		{512 * Mi, "512Mi"},
		{1024 * Mi, "1Gi"},
		{1e9, "1000000000"},
		{100e6, "100000000"},
		{3 * Ti, "3Ti"},
		{Pi, "1Pi"},
		{7 * Ei, "7Ei"},
		{math.MaxInt64, "9223372036854775807"},
		{-Gi, "-1Gi"},
		{math.MinInt64, "-8Ei"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if tt.in >= 0 {
			if back, err := ParseSize(tt.in.String()); err != nil || back != tt.in {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, tt.in)
			}
		}
	}
}

func TestPercentString(t *testing.T) {
	if got := Percent(150).String(); got != "150%" {
		t.Errorf("Percent(150) = %q", got)
	}
}
