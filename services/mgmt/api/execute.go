package api

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/services/catalog"
	"hardvisor.dev/hardvisor/services/mgmt/audit"
	"hardvisor.dev/hardvisor/services/mgmt/pki"
	"hardvisor.dev/hardvisor/services/status"
	"hardvisor.dev/hardvisor/services/supervise"
	"hardvisor.dev/hardvisor/services/vmm"
)

// Execute is mgmtd: it loads the API's certificates from --pki (ca.pem,
// server.pem, server-key.pem), opens the audit log (in catalog.AuditDir),
// forwards it to --syslog when given, and
// serves the API with mutual TLS 1.3 on --port until ctx is done. It acts
// on the host through PID 1's --socket and, when --vmm names one, on the
// guests through vmm's socket; without --vmm the host runs no guests.
func Execute(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgmtd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8443, "HTTPS port")
	pkiDir := fs.String("pki", catalog.PKIDir, "directory with ca.pem, server.pem and server-key.pem")
	syslog := fs.String("syslog", "", "remote syslog for the audit log: tcp://, tls:// or udp:// URL")
	auditPath := fs.String("audit", filepath.Join(catalog.AuditDir, "audit.log"), "audit log")
	sock := fs.String("socket", status.Socket, "PID 1's control socket")
	vmmSock := fs.String("vmm", "", "vmm's socket, for the guests API (empty: the host runs no guests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(*pkiDir, name)) }
	ca, err := read("ca.pem")
	if err != nil {
		return err
	}
	cert, err := read("server.pem")
	if err != nil {
		return err
	}
	key, err := read("server-key.pem")
	if err != nil {
		return err
	}
	tc, err := pki.ServerTLSConfig(cert, key, ca)
	if err != nil {
		return err
	}
	if ok, _ := (supervise.Mounted{Path: config.DataDir}).Met(); !ok && strings.HasPrefix(*auditPath, config.DataDir+"/") {
		log.Warn("no data partition: the audit log is in memory and lasts until the next boot", "path", *auditPath)
	}
	var opts audit.Options
	if *syslog != "" {
		fw, err := audit.NewForwarder(*syslog, audit.ForwarderOptions{Logger: log})
		if err != nil {
			return err
		}
		defer fw.Close()
		opts.Forward = fw.Forward
	}
	alog, err := audit.Open(*auditPath, opts)
	if err != nil {
		return err
	}
	defer alog.Close()
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	apiOpts := Options{Host: &status.Client{Socket: *sock}, Audit: alog, Logger: log}
	if *vmmSock != "" {
		// The client dials when it needs a connection: vmm may start after
		// mgmtd, or restart.
		apiOpts.Guests = &vmm.Client{Socket: *vmmSock}
	}
	srv := &http.Server{
		Handler:           New(apiOpts),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving the management API", "port", *port, "audit", *auditPath, "vmm", *vmmSock)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
