package selinux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hardvisor.dev/hardvisor/image/rootfs"
)

// policyFile compiles the policy and gives the binary's path.
func policyFile(t *testing.T) string {
	t.Helper()
	needTool(t, "secilc")
	dir := t.TempDir()
	if _, err := Build(dir, Enforcing); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "policy.33")
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// selinuxMagic starts every binary policy (little endian).
const selinuxMagic = 0xf97cff8c

func TestBuild(t *testing.T) {
	needTool(t, "secilc")
	p, err := Build(t.TempDir(), Enforcing)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Binary) < 8 || binary.LittleEndian.Uint32(p.Binary) != selinuxMagic {
		t.Fatalf("policy.33 does not start with the SELinux magic: % x", p.Binary[:min(8, len(p.Binary))])
	}
	// Small by design: the refpolicy is ~2.1 MB.
	if len(p.Binary) > 256<<10 {
		t.Errorf("policy is %d bytes, want under 256 KiB", len(p.Binary))
	}
	t.Logf("policy.33: %d bytes, file_contexts: %d bytes", len(p.Binary), len(p.FileContexts))
	again, err := Build(t.TempDir(), Enforcing)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Binary, again.Binary) || !bytes.Equal(p.FileContexts, again.FileContexts) {
		t.Error("two builds differ")
	}
}

func TestBuildErrors(t *testing.T) {
	needTool(t, "secilc")
	for _, tt := range []struct {
		name, src, mode, want string
	}{
		{"mode", string(policyCIL), "disabled", `selinux mode "disabled": want enforcing or permissive`},
		{"syntax", string(policyCIL) + "\n(allow svirt_t\n", Enforcing, "compile SELinux policy: secilc: exit status"},
		{"unknown type", string(policyCIL) + "\n(allow svirt_t no_such_t (file (read)))\n", Enforcing, "Failed to resolve allow statement"},
		{"neverallow", string(policyCIL) + "\n(allow svirt_t self (process (execmem)))\n", Enforcing, "neverallow check failed"},
		{"mgmt reads images", string(policyCIL) + "\n(allow hv_mgmt_t svirt_image_t (file (read)))\n", Enforcing, "neverallow check failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t.TempDir(), tt.mode, []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBuildWithoutSecilc(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Build(t.TempDir(), Enforcing); !errors.Is(err, errNoSecilc) || err.Error() != "secilc missing: apt-get install secilc" {
		t.Errorf("Build = %v, want %v", err, errNoSecilc)
	}
}

// TestRules asks sesearch what the compiled policy allows.
func TestRules(t *testing.T) {
	pol := policyFile(t)
	for _, tt := range []struct {
		name    string
		args    []string
		allowed bool
	}{
		{"TCG guests map writable memory executable", []string{"-s", "svirt_tcg_t", "-t", "svirt_tcg_t", "-c", "process", "-p", "execmem"}, true},
		{"KVM guests do not", []string{"-s", "svirt_t", "-c", "process", "-p", "execmem"}, false},
		{"guests open their images", []string{"-s", "svirt_t", "-t", "svirt_image_t", "-c", "file", "-p", "open,read,write"}, true},
		{"guests read shared content", []string{"-s", "svirt_tcg_t", "-t", "svirt_content_t", "-c", "file", "-p", "read"}, true},
		{"guests do not write shared content", []string{"-s", "svirt_t", "-t", "svirt_content_t", "-c", "file", "-p", "write"}, false},
		{"guests use /dev/kvm", []string{"-s", "svirt_t", "-t", "hv_kvm_device_t", "-c", "chr_file", "-p", "open,ioctl"}, true},
		{"guests use /dev/net/tun", []string{"-s", "svirt_t", "-t", "hv_tun_device_t", "-c", "chr_file", "-p", "read,write"}, true},
		{"guests use libvirtd's fds", []string{"-s", "svirt_t", "-t", "hv_host_t", "-c", "fd", "-p", "use"}, true},
		{"guests never read secrets", []string{"-s", "svirt_domain", "-t", "hv_secret_t", "-c", "file,dir,lnk_file"}, false},
		{"guests never read the data partition", []string{"-s", "svirt_domain", "-t", "hv_data_t", "-c", "file"}, false},
		{"guests never open logs", []string{"-s", "svirt_domain", "-t", "hv_log_t", "-c", "file", "-p", "open"}, false},
		{"guests write the pid file fd libvirtd passes", []string{"-s", "svirt_tcg_t", "-t", "hv_tmpfs_t", "-c", "file", "-p", "write"}, true},
		{"guests never open /run's files", []string{"-s", "svirt_domain", "-t", "hv_tmpfs_t", "-c", "file", "-p", "open"}, false},
		{"guests never make io_uring or userfaultfd instances", []string{"-s", "svirt_domain", "-c", "anon_inode", "-p", "create"}, false},
		{"guests never signal the host", []string{"-s", "svirt_domain", "-t", "hv_host_t", "-c", "process", "-p", "signal,sigkill,ptrace"}, false},
		{"guests never ptrace", []string{"-s", "svirt_domain", "-c", "process", "-p", "ptrace"}, false},
		{"guests never change domain", []string{"-s", "svirt_domain", "-c", "process", "-p", "transition,dyntransition,setcurrent,setexec"}, false},
		{"guests never touch the policy", []string{"-s", "svirt_domain", "-t", "hv_security_t", "-c", "file", "-p", "write"}, false},
		{"guests never use other devices", []string{"-s", "svirt_domain", "-t", "hv_device_t", "-c", "chr_file,blk_file"}, false},
		{"mgmt never reads images", []string{"-s", "hv_mgmt_t", "-t", "svirt_image_t", "-c", "file,dir,lnk_file,sock_file,blk_file,chr_file"}, false},
		{"mgmt never reads content", []string{"-s", "hv_mgmt_t", "-t", "svirt_content_t", "-c", "file,dir"}, false},
		{"mgmt never reads data files", []string{"-s", "hv_mgmt_t", "-t", "hv_data_t", "-c", "file"}, false},
		{"mgmt never touches guests", []string{"-s", "hv_mgmt_t", "-t", "svirt_domain", "-c", "process,file,dir,fd"}, false},
		{"mgmt never writes the key", []string{"-s", "hv_mgmt_t", "-t", "hv_secret_t", "-c", "file", "-p", "write,append,setattr,unlink,relabelfrom"}, false},
		{"mgmt reads its key", []string{"-s", "hv_mgmt_t", "-t", "hv_secret_t", "-c", "file", "-p", "open,read"}, true},
		{"mgmt writes its audit log", []string{"-s", "hv_mgmt_t", "-t", "hv_audit_t", "-c", "file", "-p", "create,append"}, true},
		{"mgmt reaches PID 1's socket", []string{"-s", "hv_mgmt_t", "-t", "hv_host_t", "-c", "unix_stream_socket", "-p", "connectto"}, true},
		{"mgmt listens on TCP", []string{"-s", "hv_mgmt_t", "-t", "hv_mgmt_t", "-c", "tcp_socket", "-p", "listen,accept"}, true},
		{"mgmt never ptraces", []string{"-s", "hv_mgmt_t", "-c", "process", "-p", "ptrace"}, false},
		{"mgmt never loads modules", []string{"-s", "hv_mgmt_t", "-c", "system", "-p", "module_load,module_request"}, false},
		{"mgmt never has sys_module", []string{"-s", "hv_mgmt_t", "-c", "capability", "-p", "sys_module,sys_admin,sys_ptrace,dac_override"}, false},
		{"mgmt never writes selinuxfs", []string{"-s", "hv_mgmt_t", "-t", "hv_security_t", "-c", "file,dir"}, false},
		{"mgmt never loads policy", []string{"-s", "hv_mgmt_t", "-c", "security"}, false},
		{"mgmt never connects to libvirtd's sockets", []string{"-s", "hv_mgmt_t", "-t", "hv_tmpfs_t", "-c", "sock_file"}, false},
		{"the host starts guests", []string{"-s", "hv_host_t", "-t", "svirt_tcg_t", "-c", "process", "-p", "transition"}, true},
		{"the host starts mgmtd without new privileges", []string{"-s", "hv_host_t", "-t", "hv_mgmt_t", "-c", "process2", "-p", "nnp_transition"}, true},
		{"the host is unconfined", []string{"-s", "hv_host_t", "-t", "svirt_image_t", "-c", "file", "-p", "relabelto,read,write"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := run(t, "sesearch", append(append([]string{"--allow"}, tt.args...), pol)...)
			rules := strings.TrimSpace(out)
			if got := rules != ""; got != tt.allowed {
				t.Errorf("sesearch --allow %s: allowed=%v, want %v\n%s", strings.Join(tt.args, " "), got, tt.allowed, rules)
			}
		})
	}
}

func TestTypeTransitions(t *testing.T) {
	pol := policyFile(t)
	out := run(t, "sesearch", "--type_trans", "-s", "hv_host_t", "-t", "hv_device_t", "-c", "chr_file", pol)
	for _, want := range []string{
		"type_transition hv_host_t hv_device_t:chr_file hv_kvm_device_t kvm;",
		"type_transition hv_host_t hv_device_t:chr_file hv_tun_device_t tun;",
		"type_transition hv_host_t hv_device_t:chr_file hv_null_device_t null;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sesearch --type_trans lacks %q:\n%s", want, out)
		}
	}
}

// TestMCSConstraint checks that guests, their files and their sockets are
// reachable only by subjects whose high level dominates theirs.
func TestMCSConstraint(t *testing.T) {
	pol := policyFile(t)
	out := run(t, "seinfo", pol, "--constrain")
	const expr = "(h1 dom h2 or ( t2 != hv_mcs_constrained ));"
	want := map[string][]string{
		"file":               {"open", "read", "write", "map", "execute", "entrypoint", "relabelto"},
		"dir":                {"search", "read", "add_name"},
		"sock_file":          {"write"},
		"blk_file":           {"read", "write"},
		"process":            {"signal", "sigkill", "signull", "ptrace", "transition", "getattr"},
		"fd":                 {"use"},
		"unix_stream_socket": {"connectto"},
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "mlsconstrain" {
			continue
		}
		perms, ok := want[f[1]]
		if !ok {
			continue
		}
		if !strings.HasSuffix(strings.TrimSpace(line), expr) {
			t.Errorf("constraint on %s: %s, want %s", f[1], line, expr)
		}
		for _, p := range perms {
			if !slices.Contains(f, p) {
				t.Errorf("constraint on %s lacks %s: %s", f[1], p, line)
			}
		}
		delete(want, f[1])
	}
	for class := range want {
		t.Errorf("no mlsconstrain on %s:\n%s", class, out)
	}
	attr := run(t, "seinfo", pol, "-x", "-a", "hv_mcs_constrained")
	for _, typ := range []string{"svirt_t", "svirt_tcg_t", "svirt_image_t", "svirt_tmpfs_t"} {
		if !slices.Contains(strings.Fields(attr), typ) {
			t.Errorf("hv_mcs_constrained lacks %s:\n%s", typ, attr)
		}
	}
}

// kernelClasses are the classes of the 6.1 kernel's classmap.h (and later
// ones); each must be declared, or the kernel applies handleunknown to it.
var kernelClasses = strings.Fields(`security process process2 system capability filesystem file dir fd
	lnk_file chr_file blk_file sock_file fifo_file socket tcp_socket udp_socket rawip_socket node netif
	netlink_socket packet_socket key_socket unix_stream_socket unix_dgram_socket sem msg msgq shm ipc
	netlink_route_socket netlink_tcpdiag_socket netlink_nflog_socket netlink_xfrm_socket
	netlink_selinux_socket netlink_iscsi_socket netlink_audit_socket netlink_fib_lookup_socket
	netlink_connector_socket netlink_netfilter_socket netlink_dnrt_socket association
	netlink_kobject_uevent_socket netlink_generic_socket netlink_scsitransport_socket netlink_rdma_socket
	netlink_crypto_socket appletalk_socket packet key dccp_socket memprotect peer capability2
	kernel_service tun_socket binder cap_userns cap2_userns sctp_socket icmp_socket ax25_socket
	ipx_socket netrom_socket atmpvc_socket x25_socket rose_socket decnet_socket atmsvc_socket rds_socket
	irda_socket pppox_socket llc_socket can_socket tipc_socket bluetooth_socket iucv_socket rxrpc_socket
	isdn_socket phonet_socket ieee802154_socket caif_socket alg_socket nfc_socket vsock_socket kcm_socket
	qipcrtr_socket smc_socket infiniband_pkey infiniband_endport bpf xdp_socket mctp_socket perf_event
	anon_inode io_uring user_namespace`)

func TestAllKernelClasses(t *testing.T) {
	pol := policyFile(t)
	declared := strings.Fields(run(t, "seinfo", pol, "-c"))
	for _, c := range kernelClasses {
		if !slices.Contains(declared, c) {
			t.Errorf("class %s is not declared", c)
		}
	}
	// hv_host_t is unconfined: every permission of every class.
	for _, c := range kernelClasses {
		if !strings.Contains(string(policyCIL), "(classpermissionset hv_all_perms ("+c+" (all)))") {
			t.Errorf("hv_host_t lacks class %s", c)
		}
	}
	if out := run(t, "seinfo", pol); !strings.Contains(out, "Handle unknown classes:     deny") {
		t.Errorf("want handleunknown deny:\n%s", out)
	}
}

func TestAddTo(t *testing.T) {
	p := &Policy{Mode: Permissive, Binary: []byte("bin"), FileContexts: []byte("/.*\tctx\n")}
	tr := rootfs.New()
	if err := p.AddTo(tr); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etc/selinux/config":                                    "SELINUX=permissive\nSELINUXTYPE=hardvisor\n",
		"etc/selinux/hardvisor/policy/policy.33":                "bin",
		"etc/selinux/hardvisor/contexts/files/file_contexts":    "/.*\tctx\n",
		"etc/selinux/hardvisor/contexts/virtual_domain_context": "system_u:system_r:svirt_t:s0\nsystem_u:system_r:svirt_tcg_t:s0\n",
		"etc/selinux/hardvisor/contexts/virtual_image_context":  "system_u:object_r:svirt_image_t:s0\nsystem_u:object_r:svirt_content_t:s0\n",
	}
	var got []string
	for _, e := range tr.Entries() {
		switch e.Kind {
		case rootfs.File:
			if string(e.Data) != want[e.Path] || e.Mode != 0o644 {
				t.Errorf("%s: %q mode %v, want %q 0644", e.Path, e.Data, e.Mode, want[e.Path])
			}
			got = append(got, e.Path)
		case rootfs.Dir:
			if e.Path == "var/log" {
				got = append(got, e.Path)
			}
		}
	}
	if len(got) != len(want)+1 {
		t.Errorf("entries %v, want %d files and var/log", got, len(want))
	}
}

// TestFileContexts checks the compiled file_contexts as PID 1 reads it.
func TestFileContexts(t *testing.T) {
	needTool(t, "secilc")
	p, err := Build(t.TempDir(), Enforcing)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := ParseFileContexts(bytes.NewReader(p.FileContexts))
	if err != nil {
		t.Fatal(err)
	}
	const chr = fs.ModeDevice | fs.ModeCharDevice
	for _, tt := range []struct {
		path string
		mode fs.FileMode
		want string
	}{
		{"/usr/bin/qemu-system-x86_64", 0, FileLabel},
		{"/etc/hardvisor/pki/server-key.pem", 0, SecretLabel},
		{"/etc/hardvisor/pki/server-key.pem", fs.ModeDir, FileLabel},
		{"/etc/hardvisor/pki/server-keyXpem", 0, FileLabel},
		{"/etc/hardvisor/pki/server.pem", 0, FileLabel},
		{"/dev/kvm", chr, "system_u:object_r:hv_kvm_device_t:s0"},
		{"/dev/kvm", 0, "system_u:object_r:hv_device_t:s0"},
		{"/dev/net/tun", chr, "system_u:object_r:hv_tun_device_t:s0"},
		{"/dev/null", chr, "system_u:object_r:hv_null_device_t:s0"},
		{"/dev/urandom", chr, "system_u:object_r:hv_random_device_t:s0"},
		{"/dev/random", chr, "system_u:object_r:hv_random_device_t:s0"},
		{"/dev/sda", fs.ModeDevice, "system_u:object_r:hv_device_t:s0"},
		{"/dev/shm/x", 0, "system_u:object_r:hv_tmpfs_t:s0"},
		{"/dev/pts/0", chr, ""},
		{"/proc/1/status", 0, ""},
		{"/var/lib/hardvisor", fs.ModeDir, DataLabel},
		{"/var/lib/hardvisor/images/a.img", 0, DataLabel},
		{"/var/lib/hardvisor/audit/log", 0, "system_u:object_r:hv_audit_t:s0"},
		{"/var/lib/hardvisorx", 0, FileLabel},
		{"/var/log/libvirt/qemu/g.log", 0, "system_u:object_r:hv_log_t:s0"},
		{"/run/hardvisor/control.sock", fs.ModeSocket, "system_u:object_r:hv_run_t:s0"},
		{"/run/libvirt/libvirt-sock", fs.ModeSocket, "system_u:object_r:hv_tmpfs_t:s0"},
	} {
		got, _ := fc.Lookup(tt.path, tt.mode)
		if got != tt.want {
			t.Errorf("Lookup(%s, %v) = %q, want %q", tt.path, tt.mode, got, tt.want)
		}
	}
	wantRoots := []string{"/dev", "/etc/hardvisor/pki/server-key.pem", "/run", "/tmp", "/var/lib/hardvisor", "/var/log"}
	if got := fc.Roots(); !slices.Equal(got, wantRoots) {
		t.Errorf("Roots = %q, want %q", got, wantRoots)
	}
}

func TestParseFileContextsErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/a -x ctx\n", `file_contexts line 1: unknown file type "-x"`},
		{"\n/a\n", `file_contexts line 2: want "regex [type] context", got "/a"`},
		{"/a( ctx\n", "file_contexts line 1: error parsing regexp"},
	} {
		_, err := ParseFileContexts(strings.NewReader(tt.in))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseFileContexts(%q) = %v, want %s", tt.in, err, tt.want)
		}
	}
}

func TestRoot(t *testing.T) {
	for re, want := range map[string]string{
		"/.*":                    "/",
		"/var/log(/.*)?":         "/var/log",
		"/dev/(null|zero|full)":  "/dev",
		"/dev/u?random":          "/dev",
		"/dev/kvm":               "/dev/kvm",
		`/etc/a/server-key\.pem`: "/etc/a/server-key.pem",
		"/srv/img[0-9]+":         "/srv",
		"/x":                     "/x",
	} {
		if got := root(re); got != want {
			t.Errorf("root(%q) = %q, want %q", re, got, want)
		}
	}
}
