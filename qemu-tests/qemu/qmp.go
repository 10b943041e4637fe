package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// qmpCall runs one QMP command on the unix socket at path: connect (retrying
// while QEMU has not created the socket yet), negotiate capabilities,
// execute, and return the "return" value. Asynchronous events are skipped.
func qmpCall(ctx context.Context, path, command string, args any) (json.RawMessage, error) {
	conn, err := dialRetry(ctx, path)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	dec := json.NewDecoder(conn)
	enc := json.NewEncoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("qmp %s: read greeting: %w", path, errors.Join(err, ctx.Err()))
	}
	if _, err := qmpExchange(dec, enc, "qmp_capabilities", nil); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, errors.Join(err, ctx.Err()))
	}
	ret, err := qmpExchange(dec, enc, command, args)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, errors.Join(err, ctx.Err()))
	}
	return ret, nil
}

func qmpExchange(dec *json.Decoder, enc *json.Encoder, command string, args any) (json.RawMessage, error) {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args}
	if err := enc.Encode(req); err != nil {
		return nil, fmt.Errorf("send %s: %w", command, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := dec.Decode(&resp); err != nil {
			return nil, fmt.Errorf("%s: read reply: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("%s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		default:
			return resp.Return, nil
		}
	}
}

func dialRetry(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w", path, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
