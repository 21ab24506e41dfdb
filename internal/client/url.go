package client

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Meeting is where a meeting URL points.
type Meeting struct {
	Room      string // room alias
	WebSocket string // wss://host[:port]/ws
	Origin    string // https://host[:port], sent as the WebSocket Origin
	Host      string // host name or address, without port
	Base      string // https://host[:port][/prefix]: where /api lives
}

// ParseMeetingURL reads a meeting link of the form
// https://host[:port][/prefix]/r/<alias>.
func ParseMeetingURL(raw string) (Meeting, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return Meeting{}, fmt.Errorf("meeting URL %q is not a URL: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return Meeting{}, fmt.Errorf("meeting URL %q must start with https:// and name the server", raw)
	}
	i := strings.LastIndex(u.Path, "/r/")
	if i < 0 {
		return Meeting{}, fmt.Errorf("meeting URL %q has no /r/<room> path", raw)
	}
	room := strings.Trim(u.Path[i+3:], "/")
	if room == "" || strings.Contains(room, "/") {
		return Meeting{}, fmt.Errorf("meeting URL %q does not name one room after /r/", raw)
	}
	origin := "https://" + u.Host
	return Meeting{
		Room:      room,
		WebSocket: "wss://" + u.Host + u.Path[:i] + "/ws",
		Origin:    origin,
		Host:      u.Hostname(),
		Base:      origin + u.Path[:i],
	}, nil
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
