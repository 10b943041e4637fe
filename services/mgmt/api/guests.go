package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"hardvisor.dev/hardvisor/services/vmm"
)

// Guests is what the API manages guests through: vmm, reached through its
// socket (*vmm.Client is one). An unknown guest's error wraps
// vmm.ErrUnknownGuest; one that got no answer from vmm wraps a *url.Error.
type Guests interface {
	List(ctx context.Context) ([]vmm.Status, error)
	Get(ctx context.Context, name string) (*vmm.Status, error)
	Start(ctx context.Context, name string) (*vmm.Status, error)
	Stop(ctx context.Context, name string) (*vmm.Status, error)
	Restart(ctx context.Context, name string) (*vmm.Status, error)
	Console(ctx context.Context, name string) ([]byte, error)
}

var _ Guests = (*vmm.Client)(nil)

// ConsoleReply is the body of GET /v1/guests/NAME/console.
type ConsoleReply struct {
	Guest string `json:"guest"`
	// Console is the tail of the guest's console log as vmm keeps it (its
	// last 64 KiB), as a JSON string: bytes that are not UTF-8, the first
	// ones of a character cut at the start included, become U+FFFD.
	Console string `json:"console"`
}

// errNoGuests answers every guests path on a host without vmm.
var errNoGuests = errorf(http.StatusNotFound, "this host runs no guests")

// guestAction is one of Guests' Start, Stop and Restart.
type guestAction func(Guests, context.Context, string) (*vmm.Status, error)

// changeGuest is the change of a guest's POST: act is vmm's start, stop or
// restart, whose answer, the guest's status once done, is the reply.
func changeGuest(act guestAction) func(*handler, *http.Request, string) (*change, error) {
	return func(h *handler, r *http.Request, name string) (*change, error) {
		if h.guests == nil {
			return nil, errNoGuests
		}
		if err := noInput(r); err != nil {
			return nil, err
		}
		return &change{do: func(ctx context.Context) (any, error) {
			st, err := act(h.guests, ctx, name)
			if err != nil {
				return nil, guestError(err, name)
			}
			return st, nil
		}}, nil
	}
}

func readGuests(h *handler, r *http.Request, _ string) (any, error) {
	if h.guests == nil {
		return nil, errNoGuests
	}
	if err := noQuery(r); err != nil {
		return nil, err
	}
	gs, err := h.guests.List(r.Context())
	if err != nil {
		return nil, guestError(err, "")
	}
	return vmm.ListReply{Guests: orEmpty(gs)}, nil
}

func readGuest(h *handler, r *http.Request, name string) (any, error) {
	if h.guests == nil {
		return nil, errNoGuests
	}
	if err := noQuery(r); err != nil {
		return nil, err
	}
	st, err := h.guests.Get(r.Context(), name)
	if err != nil {
		return nil, guestError(err, name)
	}
	return st, nil
}

func readConsole(h *handler, r *http.Request, name string) (any, error) {
	if h.guests == nil {
		return nil, errNoGuests
	}
	if err := noQuery(r); err != nil {
		return nil, err
	}
	b, err := h.guests.Console(r.Context(), name)
	if err != nil {
		return nil, guestError(err, name)
	}
	return ConsoleReply{Guest: name, Console: string(b)}, nil
}

// guestError is what a vmm error is answered with: 404 for a guest vmm
// does not have, 409 for one that does not fit the host's memory budget now,
// 503 when vmm gave no answer (not running, its socket gone), else 502, vmm
// having failed (its message says why).
func guestError(err error, name string) error {
	var ue *url.Error
	switch {
	case errors.Is(err, vmm.ErrUnknownGuest):
		return errorf(http.StatusNotFound, "unknown guest %q", name)
	case errors.Is(err, vmm.ErrNoBudget):
		return errorf(http.StatusConflict, "%v", err)
	case errors.As(err, &ue):
		return errorf(http.StatusServiceUnavailable, "vmm unreachable: %v", err)
	}
	return errorf(http.StatusBadGateway, "%v", err)
}
