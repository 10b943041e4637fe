package cli

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/services/mgmt/pki"
)

const pkiUsage = `usage:
  hardvisor pki init DIR [--name NAME]
  hardvisor pki issue --ca DIR --role viewer|operator|admin --name NAME [--out PREFIX] [--days N]
  hardvisor pki issue --ca DIR --server --name HOSTNAME [--dns NAME,...] [--ip ADDR,...] [--out PREFIX] [--days N]
`

const (
	pkiInitUsage  = "usage: hardvisor pki init DIR [--name NAME]"
	pkiIssueUsage = "usage: hardvisor pki issue --ca DIR (--role viewer|operator|admin | --server [--dns NAME,...] [--ip ADDR,...]) --name NAME [--out PREFIX] [--days N]"
	maxDays       = 36500
)

// runPKI is `hardvisor pki init|issue`: the certificate authority whose
// certificates the management API's mutual TLS checks.
func runPKI(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, pkiUsage)
		return &UsageError{Msg: "pki: no subcommand given (init or issue)"}
	}
	switch args[0] {
	case "init":
		return runPKIInit(args[1:], stdout, stderr)
	case "issue":
		return runPKIIssue(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, pkiUsage)
		return nil
	}
	fmt.Fprint(stderr, pkiUsage)
	return &UsageError{Msg: fmt.Sprintf("pki: unknown subcommand %q", args[0])}
}

// runPKIInit is `hardvisor pki init DIR [--name NAME]`.
func runPKIInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pki init", stderr)
	name := fs.String("name", "", `installation name: the CA is called "hardvisor CA NAME"`)
	pos, help, err := parseInterspersed(fs, args)
	if err != nil || help {
		return err
	}
	if len(pos) != 1 {
		return &UsageError{Msg: pkiInitUsage}
	}
	dir := pos[0]
	ca, err := pki.Init(dir, pki.InitOptions{Name: *name})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: CA certificate %q\n", filepath.Join(dir, pki.CertFile), ca.Cert.Subject.CommonName)
	fmt.Fprintf(stdout, "%s: CA private key\n", filepath.Join(dir, pki.KeyFile))
	return nil
}

// runPKIIssue is `hardvisor pki issue`: a client certificate with a role, or
// with --server one for the management API.
func runPKIIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pki issue", stderr)
	caDir := fs.String("ca", "", "CA directory, made by hardvisor pki init")
	roleName := fs.String("role", "", "client role: viewer, operator or admin")
	server := fs.Bool("server", false, "issue a server certificate (no role) instead of a client one")
	name := fs.String("name", "", "client: the person or tool; server: the host name")
	dnsList := fs.String("dns", "", "server: more DNS names, comma-separated (--name is one when it is a host name)")
	ipList := fs.String("ip", "", "server: IP addresses, comma-separated")
	out := fs.String("out", "", "write PREFIX.pem and PREFIX-key.pem (default: the CA directory/NAME)")
	days := fs.Int("days", 365, "validity in days")
	pos, help, err := parseInterspersed(fs, args)
	if err != nil || help {
		return err
	}
	switch {
	case len(pos) != 0:
		return &UsageError{Msg: fmt.Sprintf("pki issue: unexpected argument %q\n%s", pos[0], pkiIssueUsage)}
	case *caDir == "":
		return &UsageError{Msg: "pki issue: --ca DIR is required\n" + pkiIssueUsage}
	case *name == "":
		return &UsageError{Msg: "pki issue: --name is required\n" + pkiIssueUsage}
	case *server && *roleName != "":
		return &UsageError{Msg: "pki issue: --role is for client certificates: a server certificate has no role"}
	case !*server && *roleName == "":
		return &UsageError{Msg: "pki issue: --role viewer, operator or admin is required for a client certificate (or --server)"}
	case !*server && (*dnsList != "" || *ipList != ""):
		return &UsageError{Msg: "pki issue: --dns and --ip are for server certificates (--server)"}
	case *days < 1 || *days > maxDays:
		return &UsageError{Msg: fmt.Sprintf("pki issue: --days %d: want 1 to %d", *days, maxDays)}
	}
	var role pki.Role
	if !*server {
		if role, err = pki.ParseRole(*roleName); err != nil {
			return &UsageError{Msg: "pki issue: --role: " + err.Error()}
		}
	}
	dnsNames, err := pkiList("--dns", *dnsList)
	if err != nil {
		return err
	}
	ipNames, err := pkiList("--ip", *ipList)
	if err != nil {
		return err
	}
	ips := make([]net.IP, len(ipNames))
	for i, s := range ipNames {
		if ips[i] = net.ParseIP(s); ips[i] == nil {
			return &UsageError{Msg: fmt.Sprintf("pki issue: --ip: %q is not an IP address", s)}
		}
	}
	prefix := *out
	if prefix == "" {
		if *name == "." || *name == ".." || strings.ContainsRune(*name, '/') {
			return &UsageError{Msg: fmt.Sprintf("pki issue: --name %q is not a file name: give --out PREFIX", *name)}
		}
		prefix = filepath.Join(*caDir, *name)
	}
	certPath, keyPath := prefix+".pem", prefix+"-key.pem"

	ca, err := pki.Load(*caDir)
	if err != nil {
		return err
	}
	validity := time.Duration(*days) * 24 * time.Hour
	var certPEM, keyPEM []byte
	if *server {
		certPEM, keyPEM, err = ca.IssueServer(*name, dnsNames, ips, validity)
	} else {
		certPEM, keyPEM, err = ca.IssueClient(*name, role, validity)
	}
	if err != nil {
		return err
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if err := pki.WriteFiles(certPath, keyPath, certPEM, keyPEM); err != nil {
		return err
	}
	if *server {
		sans := cert.DNSNames
		for _, ip := range cert.IPAddresses {
			sans = append(sans, ip.String())
		}
		fmt.Fprintf(stdout, "%s: server certificate %q for %s, until %s\n", certPath, *name, strings.Join(sans, ", "),
			cert.NotAfter.UTC().Format(time.DateOnly))
	} else {
		fmt.Fprintf(stdout, "%s: client certificate %q, role %s, until %s\n", certPath, *name, role,
			cert.NotAfter.UTC().Format(time.DateOnly))
	}
	fmt.Fprintf(stdout, "%s: private key of %s\n", keyPath, certPath)
	return nil
}

// pkiList splits a comma-separated flag value; "" is an empty list, an
// empty element is a usage error.
func pkiList(flagName, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	items := strings.Split(s, ",")
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, &UsageError{Msg: fmt.Sprintf("pki issue: %s %q: empty element", flagName, s)}
		}
	}
	return items, nil
}
