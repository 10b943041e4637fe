package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// How fresh the status the API answers with is. Status is what monitoring
// polls, and it is the most expensive thing to ask PID 1 for: it reads every
// service's cgroup and process files and the management namespace's links.
// So the API asks PID 1 at most about once per StatusMaxAge however many
// clients poll, and a viewer flooding /v1/status cannot load PID 1. A
// report older than that is still answered, while a fresh one is fetched in
// the background, up to StatusStaleLimit; after that a request waits for
// the fresh one. A change made through the API drops the cached report, so
// its effect shows at once. The report's At says when it was made.
const (
	StatusMaxAge     = time.Second
	StatusStaleLimit = 5 * time.Second
	// statusFetchTimeout bounds one fetch, which runs detached from the
	// requests waiting for it.
	statusFetchTimeout = 30 * time.Second
)

// statusCache holds the host's last status report and its views, encoded.
type statusCache struct {
	host Host
	now  func() time.Time

	mu   sync.Mutex
	snap *snapshot
	// fetch is the fetch in flight (nil when none).
	fetch *fetch
	// gen counts invalidations: a fetch that began before one is not kept.
	gen uint64
}

// snapshot is one report and its views as JSON, made once per fetch.
type snapshot struct {
	at    time.Time // when it was fetched
	views map[string]json.RawMessage
}

// The views of a report the API answers with.
const (
	viewStatus    = "status"
	viewHardening = "hardening"
	viewServices  = "services"
	viewNetwork   = "network"
)

// fetch is one request for the host's report; done closes when it ends.
type fetch struct {
	done chan struct{}
	snap *snapshot // what it got, if it is kept
	err  error
}

// view gives one view of a report fresh enough to answer with.
func (c *statusCache) view(ctx context.Context, name string) (json.RawMessage, error) {
	for {
		c.mu.Lock()
		s := c.snap
		if s != nil {
			age := c.now().Sub(s.at)
			if age > StatusMaxAge && age <= StatusStaleLimit {
				c.startLocked()
			}
			if age <= StatusStaleLimit {
				c.mu.Unlock()
				return s.views[name], nil
			}
		}
		f := c.startLocked()
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil {
			return nil, f.err
		}
		if f.snap != nil {
			return f.snap.views[name], nil
		}
		// An invalidation discarded what it got: fetch again.
	}
}

// startLocked starts a fetch unless one is in flight, and gives it.
func (c *statusCache) startLocked() *fetch {
	if c.fetch != nil {
		return c.fetch
	}
	f := &fetch{done: make(chan struct{})}
	c.fetch = f
	gen := c.gen
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), statusFetchTimeout)
		defer cancel()
		s, err := c.get(ctx)
		c.mu.Lock()
		if err == nil && gen == c.gen {
			c.snap, f.snap = s, s
		}
		c.fetch = nil
		f.err = err
		c.mu.Unlock()
		close(f.done)
	}()
	return f
}

// invalidate drops the cached report: the next request fetches a new one.
func (c *statusCache) invalidate() {
	c.mu.Lock()
	c.snap = nil
	c.gen++
	c.mu.Unlock()
}

func (c *statusCache) get(ctx context.Context) (*snapshot, error) {
	rep, err := c.host.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if rep == nil {
		return nil, errors.New("status: the host sent no report")
	}
	s := &snapshot{at: c.now(), views: map[string]json.RawMessage{}}
	for name, v := range map[string]any{
		viewStatus:    rep,
		viewHardening: orEmpty(rep.Hardening),
		viewServices:  orEmpty(rep.Services),
		viewNetwork:   rep.Network,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("status: encode %s: %w", name, err)
		}
		s.views[name] = b
	}
	return s, nil
}
