package turn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Credentials follow the TURN REST API scheme
// (draft-uberti-behave-turn-rest-00), with HMAC-SHA-256 where the draft
// names HMAC-SHA1:
//
//	username = "<expiry, Unix seconds>:<participant id>"
//	password = base64(HMAC-SHA-256(secret, username))
//
// The secret is drawn at start and never leaves the process, so only this
// node can issue credentials for its TURN server, and a restart revokes
// them all. What TURN itself then does with the password (the long-term
// credential mechanism of RFC 8489: an MD5 key and HMAC-SHA1 message
// integrity) is fixed by the protocol and by what browsers speak; it
// authenticates allocations, while the media inside stay protected by
// DTLS-SRTP and end-to-end encryption.

// maxParticipantLen bounds the participant part of a username.
const maxParticipantLen = 64

// credential returns the username and password of participant's
// credential expiring at expiry.
func (s *Server) credential(participant string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + participant
	return username, s.password(username)
}

func (s *Server) password(username string) string {
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

var errUsername = errors.New("not a Conclave TURN username")

// parseUsername splits a username into its expiry and participant id.
func parseUsername(username string) (time.Time, string, error) {
	ts, participant, ok := strings.Cut(username, ":")
	if !ok || ts == "" || participant == "" || len(participant) > maxParticipantLen {
		return time.Time{}, "", errUsername
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, "", errUsername
		}
	}
	for i := 0; i < len(participant); i++ {
		c := participant[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return time.Time{}, "", errUsername
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec > 1<<40 {
		return time.Time{}, "", errUsername
	}
	return time.Unix(sec, 0), participant, nil
}

// authenticate is the TURN server's AuthHandler. Opening an allocation
// needs a well-formed, unexpired credential of a participant in a
// meeting. The other requests (refreshes, permissions, channels) act on
// an allocation already open and need only a well-formed username: they
// may come after the credential expired, for as long as its participant
// stays, and once it left its allocations are gone (Release), so that
// its client's last refreshes find nothing and are not counted as
// refusals. A wrong password is caught by the message integrity check
// that follows (OnAuth).
func (s *Server) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	expiry, participant, err := parseUsername(ra.Username)
	if err != nil || ra.Realm != Realm {
		s.refuse(RefusedMalformed, "malformed username or realm", ra.SrcAddr, "")
		return "", nil, false
	}
	if ra.Method == stun.MethodAllocate {
		if !s.present(participant) {
			s.refuse(RefusedAbsent, "credential of a participant not in a meeting", ra.SrcAddr, participant)
			return "", nil, false
		}
		if !s.cfg.Now().Before(expiry) {
			s.refuse(RefusedExpired, "expired credential", ra.SrcAddr, participant)
			return "", nil, false
		}
	}
	return participant, turn.GenerateAuthKey(ra.Username, ra.Realm, s.password(ra.Username)), true
}

// quota is the TURN server's QuotaHandler: an allocation is refused when
// its participant or the node holds the most allowed.
func (s *Server) quota(participant, _ string, src net.Addr) bool {
	s.mu.Lock()
	full := s.total >= s.cfg.MaxAllocations || len(s.relays[participant]) >= s.cfg.PerParticipant
	s.mu.Unlock()
	if full {
		s.refuse(RefusedQuota, "allocation quota reached", src, participant)
	}
	return !full
}

// permitted is the TURN server's PermissionHandler: permissions are
// granted toward the node's own media addresses only.
func (s *Server) permitted(src net.Addr, peer net.IP) bool {
	ip, ok := netipAddr(peer)
	if ok && s.peerIP[ip] {
		return true
	}
	s.refuse(RefusedPeer, "permission toward an address that is not this node's media", src, "")
	return false
}

func (s *Server) refuse(reason, what string, src net.Addr, participant string) {
	s.stats.refused[reason].Add(1)
	s.log.Debug("TURN request refused: "+what, "reason", reason, "client", src, "participant", participant)
}
