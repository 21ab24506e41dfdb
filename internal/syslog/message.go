// Package syslog forwards the audit log to syslog servers over TLS: each
// record becomes an RFC 5424 message, framed by octet counting and sent
// over TLS 1.2 or 1.3 as RFC 5425 says.
//
// The audit log itself is the buffer: each server has a cursor (the last
// record delivered, kept in a file) and the forwarder sends what follows
// it, in order, whenever it can. While a server is unreachable nothing is
// lost as long as the audit files keep the records (their size cap, 2 GB
// by default, bounds the buffer); an alarm is raised while it is down.
package syslog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"conclave/internal/store"
)

// Facility 13 is "log audit" (RFC 5424, table 1).
const facilityLogAudit = 13

// Severities used (RFC 5424, table 2).
const (
	sevWarning = 4
	sevNotice  = 5
	sevInfo    = 6
)

// EnterpriseID names the structured data element "conclave@32473". 32473
// is the private enterprise number RFC 5612 reserves for documentation;
// receivers match on the element's name.
const EnterpriseID = "conclave@32473"

// Format returns the RFC 5424 message of an audit record: PRI
// (facility log audit; warning for failures, notice for successes, info
// otherwise), version 1, the record's time in UTC with microseconds, the
// host name, APP-NAME "conclave", PROCID "-", MSGID the action, one
// structured data element with the record's fields, and a UTF-8 message
// (with BOM) that says the same for a reader.
func Format(r store.AuditRecord, hostname string) []byte {
	sev := sevInfo
	switch r.Outcome {
	case "failure":
		sev = sevWarning
	case "success":
		sev = sevNotice
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s conclave - %s [%s", facilityLogAudit*8+sev,
		r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), header(hostname, 255), header(r.Action, 32), EnterpriseID)
	param := func(name, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=\"%s\"", name, sdEscape(v))
		}
	}
	param("seq", strconv.FormatInt(r.Seq, 10))
	param("actor", r.Actor)
	param("source", r.Source)
	param("target", r.Target)
	param("outcome", r.Outcome)
	param("hash", fmt.Sprintf("%x", r.Hash))
	b.WriteString("] \ufeff")
	b.WriteString(r.Action)
	b.WriteString(" by ")
	b.WriteString(r.Actor)
	if r.Target != "" {
		b.WriteString(" on ")
		b.WriteString(r.Target)
	}
	b.WriteString(": ")
	b.WriteString(r.Outcome)
	if len(r.Details) > 0 {
		d, _ := json.Marshal(r.Details) // keys sorted
		b.WriteByte(' ')
		b.Write(d)
	}
	return []byte(strings.NewReplacer("\n", " ", "\r", " ").Replace(b.String()))
}

// Frame returns msg framed by octet counting (RFC 5425, section 4.3):
// its length in decimal, a space, then the message.
func Frame(msg []byte) []byte {
	out := strconv.AppendInt(nil, int64(len(msg)), 10)
	out = append(out, ' ')
	return append(out, msg...)
}

// header makes v a valid header field: printable US-ASCII without spaces,
// at most n characters, "-" when empty.
func header(v string, n int) string {
	var b strings.Builder
	for _, c := range v {
		if c > 32 && c < 127 {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
		if b.Len() == n {
			break
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a structured data parameter value (RFC 5424, 6.3.3).
func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// Timestamp parses the TIMESTAMP of a message Format made (tests).
func Timestamp(s string) (time.Time, error) {
	return time.Parse("2006-01-02T15:04:05.000000Z07:00", s)
}
