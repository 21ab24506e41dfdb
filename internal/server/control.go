package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ControlSocket is the Unix socket, in a conference node's directory, on
// which `conclave node drain` talks to the running node (mode 0600: only
// the node's own user).
const ControlSocket = "control.sock"

// ControlRequest and ControlReply are the control socket's JSON lines.
type ControlRequest struct {
	// Command is "drain" (Off false: start; true: stop) or "status".
	Command string `json:"command"`
	Off     bool   `json:"off,omitempty"`
}

// ControlReply answers a ControlRequest.
type ControlReply struct {
	Draining     bool   `json:"draining"`
	Moved        int    `json:"moved,omitempty"`
	Meetings     int    `json:"meetings"`
	Participants int    `json:"participants"`
	Error        string `json:"error,omitempty"`
}

// serveControl answers the control socket until ctx ends.
func (n *Node) serveControl(ctx context.Context) error {
	path := filepath.Join(n.cfg.DataDir, NodeDir, ControlSocket)
	os.Remove(path) // a socket left by a process that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go n.control(c)
		}
	}()
	return nil
}

func (n *Node) control(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req ControlRequest
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		return
	}
	var rep ControlReply
	switch req.Command {
	case "drain":
		rep.Moved = n.SetDraining(!req.Off)
	case "status":
	default:
		rep.Error = fmt.Sprintf("unknown command %q", req.Command)
	}
	rep.Draining = n.draining.Load()
	rep.Meetings, rep.Participants = n.meetings.Stats()
	json.NewEncoder(c).Encode(rep)
}

// Control sends a request to the conference node running on data
// directory dir.
func Control(dir string, req ControlRequest) (ControlReply, error) {
	path := filepath.Join(dir, NodeDir, ControlSocket)
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return ControlReply{}, fmt.Errorf("no conference node runs on %s (%w)", dir, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return ControlReply{}, err
	}
	var rep ControlReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return ControlReply{}, err
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
