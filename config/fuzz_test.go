package config

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it fails only with Errors,
// and that whatever it accepts survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add(Default())
	f.Add([]byte(designExample))
	f.Add([]byte(header))
	f.Add([]byte(header + "host: {hostnam: x}\nguests: [{name: a, memory: 4Q}]\n"))
	f.Add([]byte(header + "a: &a [*a]\n"))
	f.Add([]byte(header + "x: &x {a: 1}\nhost: *x\n"))
	f.Add([]byte("apiVersion: [\n"))
	f.Add([]byte(header + "kernel: {modules: []}\nresources: {host: {memory: 3Gi, cpus: 4}}\n"))
	f.Add([]byte(header + "templates: [{name: t, cpus: 2, memory: 1000000000, limits: {cpu: 150%}}]\n" +
		"networks: [{name: n, uplinks: [{mac: 52:54:00:AA:BB:CC}], vlan: 7, domain: d}]\n" +
		"guests: [{name: g, template: t, network: n, cpus: 1, memory: 0x20000000, domain: d}]\n"))
	for _, tt := range parseErrorCases {
		f.Add([]byte(tt.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse error is not a non-empty Errors: %#v", err)
			}
			_ = err.Error()
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse("marshaled.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal()): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%#v\n%#v\n%s", c, c2, out)
		}
		out2, err := c2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable (%v):\n%s\n%s", err, out, out2)
		}
	})
}
