// Package alarm is Conclave's one alarm model. An alarm is a condition an
// operator must know about while it lasts: a blocked room or quarantined
// address, a filling disk, an unreachable syslog server, a certificate
// close to expiry, a self-check failure, an unsynchronised clock. It is
// raised once, stays active (raising it again only updates its message),
// and is cleared once the condition ends.
//
// A Center holds the active alarms and tells its observers of every
// change, one change at a time and in order: the server's observers write
// the log line and the audit entry; the admin UI and the metrics read
// Active.
package alarm

import (
	"slices"
	"sort"
	"sync"
	"time"

	"conclave/internal/clock"
)

// Severity says how urgent an alarm is.
type Severity string

// Severities, most urgent first.
const (
	Critical Severity = "critical" // the service is or will shortly be impaired
	Major    Severity = "major"    // a protection is not working
	Minor    Severity = "minor"    // something needs attention soon
	Warning  Severity = "warning"  // worth a look
)

// Severities lists every severity, most urgent first.
var Severities = []Severity{Critical, Major, Minor, Warning}

// Kinds of alarm raised by Conclave's packages.
const (
	KindRoomBlocked        = "room-blocked"
	KindAddressQuarantined = "address-quarantined"
	KindDisk               = "disk"
	KindAuditStorage       = "audit-storage"
	KindSyslog             = "syslog"
	KindCertificate        = "certificate-expiry"
	KindSelfCheck          = "self-check"
	KindClock              = "clock"
	KindBackup             = "backup"
)

// Alarm is one active (or just cleared) alarm. Kind and Subject identify
// it: raising the same pair again updates it.
type Alarm struct {
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	Severity Severity  `json:"severity"`
	Message  string    `json:"message"`
	Raised   time.Time `json:"raised"`
	// Cleared is set on the Alarm handed to observers' Cleared.
	Cleared time.Time `json:"cleared,omitzero"`
}

// Observer is told of every change. Calls are made one at a time, in the
// order of the changes, never while the Center's lock is held; an
// observer may raise or clear alarms itself (its change is delivered
// after the current one).
type Observer interface {
	Raised(Alarm)
	Cleared(Alarm)
}

// Center holds the active alarms. The zero value is not usable; use New.
type Center struct {
	clock clock.Clock

	mu        sync.Mutex
	active    map[key]Alarm
	observers []Observer
	// queue holds the changes not yet delivered; draining is set while a
	// goroutine delivers them, in order.
	queue    []event
	draining bool
}

type event struct {
	a      Alarm
	raised bool
}

// emitLocked queues a change and, unless another call is delivering,
// delivers the queue; it unlocks c.mu.
func (c *Center) emitLocked(e event) {
	c.queue = append(c.queue, e)
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	for len(c.queue) > 0 {
		e := c.queue[0]
		c.queue = c.queue[1:]
		obs := c.observers
		c.mu.Unlock()
		for _, o := range obs {
			if e.raised {
				o.Raised(e.a)
			} else {
				o.Cleared(e.a)
			}
		}
		c.mu.Lock()
	}
	c.draining = false
	c.mu.Unlock()
}

type key struct{ kind, subject string }

// New returns an empty Center dating alarms by clk (nil: the system clock).
func New(clk clock.Clock) *Center {
	return &Center{clock: clock.Or(clk), active: map[key]Alarm{}}
}

// Observe adds an observer; call it before the first Raise.
func (c *Center) Observe(o Observer) {
	c.mu.Lock()
	c.observers = append(c.observers, o)
	c.mu.Unlock()
}

// Raise raises the alarm kind/subject, or updates the severity and
// message of the one already active (observers hear only of a new alarm
// or a change of severity). It reports whether the alarm is new.
func (c *Center) Raise(kind, subject string, sev Severity, message string) bool {
	now := c.clock.Now().UTC()
	c.mu.Lock()
	k := key{kind, subject}
	old, was := c.active[k]
	a := Alarm{Kind: kind, Subject: subject, Severity: sev, Message: message, Raised: now}
	if was {
		a.Raised = old.Raised
	}
	c.active[k] = a
	if was && old.Severity == sev {
		c.mu.Unlock()
		return false
	}
	c.emitLocked(event{a: a, raised: true})
	return !was
}

// Clear clears the alarm kind/subject if it is active and reports whether
// it was.
func (c *Center) Clear(kind, subject string) bool {
	now := c.clock.Now().UTC()
	c.mu.Lock()
	k := key{kind, subject}
	a, was := c.active[k]
	if !was {
		c.mu.Unlock()
		return false
	}
	delete(c.active, k)
	a.Cleared = now
	c.emitLocked(event{a: a})
	return true
}

// Set raises the alarm when on is true and clears it otherwise: the form
// for a periodic check.
func (c *Center) Set(on bool, kind, subject string, sev Severity, message string) {
	if on {
		c.Raise(kind, subject, sev, message)
	} else {
		c.Clear(kind, subject)
	}
}

// IsActive reports whether the alarm kind/subject is active.
func (c *Center) IsActive(kind, subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.active[key{kind, subject}]
	return ok
}

// Active returns the active alarms, most severe first, then oldest first.
func (c *Center) Active() []Alarm {
	c.mu.Lock()
	out := make([]Alarm, 0, len(c.active))
	for _, a := range c.active {
		out = append(out, a)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		si, sj := slices.Index(Severities, out[i].Severity), slices.Index(Severities, out[j].Severity)
		if si != sj {
			return si < sj
		}
		if !out[i].Raised.Equal(out[j].Raised) {
			return out[i].Raised.Before(out[j].Raised)
		}
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Subject < out[j].Subject
	})
	return out
}

// Count returns the number of active alarms of each kind and severity.
func (c *Center) Count() map[[2]string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[[2]string]int{}
	for _, a := range c.active {
		n[[2]string{a.Kind, string(a.Severity)}]++
	}
	return n
}
