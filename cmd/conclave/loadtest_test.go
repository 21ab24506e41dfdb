package main

import (
	"io"
	"strings"
	"testing"
)

// TestLoadtestFlags: bad combinations are refused with a reason and exit
// status 2, before anything starts.
func TestLoadtestFlags(t *testing.T) {
	for _, tt := range []struct {
		args string
		want string // in the error; "" for accepted
	}{
		{"-local -pubs 10 -subs 100", ""},
		{"-local -pubs 5 -subs 20 -relay udp", ""},
		{"-local -pubs 5 -subs 20 -relay any", ""},
		{"-local -pubs 5 -subs 20 -relay quic", "-relay"},
		{"-url https://h/r/bench -audio 10 -subs 500 -server-debug http://127.0.0.1:6060 -cpuprofile x", ""},
		{"-pubs 1 -subs 1", "-local or -url"},
		{"-local -url https://h/r/x -pubs 1 -subs 1", "-local or -url"},
		{"-local -subs 1", "nobody publishes"},
		{"-local -pubs 1", "nobody subscribes"},
		{"-local -pubs -1 -audio 2 -subs 1", "negative"},
		{"-local -pubs 1 -subs 1 -duration 10ms", "-duration"},
		{"-local -pubs 1 -subs 1 -server-pid 3", "go with -url"},
		{"-url https://h/r/x -pubs 1 -subs 1 -server-log l", "-server-log"},
		{"-url https://h/r/x -pubs 1 -subs 1 -memprofile m", "-server-debug"},
		{"-url https://h/r/x -pubs 1 -subs 1 -server-pid 3 -server-debug http://127.0.0.1:1", "not both"},
		{"-url http://h/r/x -pubs 1 -subs 1", "https://"},
		{"-local -pubs 1 -subs 1 -layout 2:10", "COUNT:WIDTHxHEIGHT"},
		{"-local -pubs 1 -subs 1 -rooms 0", "-rooms"},
		{"-local -pubs 1 -subs 1 https://h/r/x", "unexpected argument"},
	} {
		var stderr strings.Builder
		_, _, err := parseLoadtestFlags(strings.Fields(tt.args), &stderr)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(stderr.String(), tt.want)):
			t.Errorf("%s: %v, stderr %q; want an error about %q", tt.args, err, stderr.String(), tt.want)
		}
	}
	if code := run([]string{"loadtest", "-local"}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("exit status %d for bad flags, want 2", code)
	}
}
