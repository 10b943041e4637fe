package vmm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"hardvisor.dev/hardvisor/config"
	"hardvisor.dev/hardvisor/init/network"
)

// DefaultConfig is where the image carries the config.
const DefaultConfig = "/etc/hardvisor/config.yaml"

// Execute is vmmd: it loads the config (this host's section, as PID 1
// picks it), waits for libvirtd, reconciles the guests, serves the API on
// --listen and watches the guests until ctx is done (SIGTERM); then it
// shuts every guest down (ACPI, destroyed after --shutdown-timeout) and
// returns nil.
func Execute(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vmmd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", DefaultConfig, "the appliance config")
	sock := fs.String("socket", DefaultLibvirtSocket, "libvirtd's unix socket")
	listen := fs.String("listen", Socket, "unix socket to serve the API on")
	group := fs.Int("group", 901, "group allowed on --listen")
	timeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long a guest has to power off before it is destroyed")
	kvm := fs.Bool("kvm", false, "run guests with KVM (domain type kvm) instead of TCG")
	dataDir := fs.String("data", config.DataDir, "where the guests' disks and console logs live")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	c, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	// The NICs left in this namespace: the management NIC is in its own
	// by now, so a hosts[] entry matching only it is missed; vmm uses no
	// setting such an entry overrides.
	nics, err := network.Discover("/sys/class/net")
	if err != nil {
		return err
	}
	var macs []string
	for _, n := range nics {
		macs = append(macs, n.MAC)
	}
	guests, err := Guests(c.ForHost(macs))
	if err != nil {
		return err
	}
	// The API's socket appears once the guests are reconciled: the
	// service manager takes it for vmm's readiness.
	reconciled := make(chan struct{})
	opts := Options{Socket: *sock, DataDir: *dataDir, ShutdownTimeout: *timeout, Logger: log,
		Reconciled: func() { close(reconciled) }}
	if *kvm {
		opts.Type = TypeKVM
	}
	m, err := New(guests, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	srv := &http.Server{Handler: Handler(m), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	select {
	case <-reconciled:
		l, err := Listen(*listen, *group)
		if err != nil {
			return err
		}
		go func() { serveErr <- srv.Serve(l) }()
		log.Info("serving", "listen", *listen, "guests", len(guests), "type", opts.Type)
	case err = <-runErr:
		runErr <- err
	}
	select {
	case err = <-runErr:
	case err = <-serveErr:
		err = fmt.Errorf("serve %s: %w", *listen, err)
	}
	log.Info("shutting the guests down", "timeout", timeout.String())
	if serr := m.Shutdown(context.Background()); serr != nil {
		log.Error("shutdown", "err", serr)
	}
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if cerr := srv.Shutdown(shut); cerr != nil && !errors.Is(cerr, http.ErrServerClosed) {
		log.Warn("stop serving", "err", cerr)
	}
	return err
}
