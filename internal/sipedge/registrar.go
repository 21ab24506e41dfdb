package sipedge

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"conclave/internal/audit"
	"conclave/internal/devca"
)

// binding is one registered contact of an address of record.
type binding struct {
	aor     string
	contact sip.Uri
	// flow is the remote address of the TLS connection the registration
	// came on: requests for the contact go back over it, so devices
	// behind NAT need no listening port of their own.
	flow    string
	serial  string
	expires time.Time
	since   time.Time
}

// Registration is a registered contact as the admin API shows it.
type Registration struct {
	AOR     string    `json:"aor"`
	Contact string    `json:"contact"`
	Source  string    `json:"source"`
	Serial  string    `json:"serial"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

type registrar struct {
	e  *Edge
	mu sync.Mutex
	by map[string][]*binding // by AOR
}

func newRegistrar(e *Edge) *registrar { return &registrar{e: e, by: map[string][]*binding{}} }

// aorOf returns the address of record a URI names, in the form
// certificates carry.
func aorOf(u sip.Uri) string {
	return "sip:" + strings.ToLower(u.User) + "@" + strings.ToLower(u.Host)
}

func (r *registrar) handle(req *sip.Request, tx sip.ServerTransaction, _ *devca.Identity) {
	e := r.e
	c := e.ln.conn(req.Source())
	src := c.addr.Addr()
	id, err := e.reverify(c)
	if err != nil {
		r.dropSerial(c.identity.Serial)
		e.fail(src, ActionRegisterRefused, c.identity.Username, c.identity.AOR, err.Error())
		e.respond(tx, req, sip.StatusForbidden, "Forbidden")
		c.Close()
		return
	}
	to := req.To()
	if to == nil {
		e.respond(tx, req, sip.StatusBadRequest, "Bad Request")
		return
	}
	aor := aorOf(to.Address)
	if aor != id.AOR {
		e.fail(src, ActionRegisterRefused, id.Username, aor, "the certificate is bound to "+id.AOR)
		e.respond(tx, req, sip.StatusForbidden, "Forbidden")
		return
	}
	if !e.digestOK(tx, req, id, false) {
		return
	}
	def := e.cfg.MaxExpires
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			def = time.Duration(n) * time.Second
		}
	}
	now := e.clock.Now()
	var added []*binding
	var removeAll bool
	var removed []sip.Uri
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if ch.Address.Wildcard {
			if def != 0 {
				e.respond(tx, req, sip.StatusBadRequest, "Bad Request")
				return
			}
			removeAll = true
			continue
		}
		exp := def
		if v, ok := ch.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				exp = time.Duration(n) * time.Second
			}
		}
		if exp == 0 {
			removed = append(removed, ch.Address)
			continue
		}
		if exp < e.cfg.MinExpires {
			e.respond(tx, req, sip.StatusIntervalToBrief, "Interval Too Brief",
				sip.NewHeader("Min-Expires", strconv.Itoa(int(e.cfg.MinExpires/time.Second))))
			return
		}
		exp = min(exp, e.cfg.MaxExpires)
		added = append(added, &binding{aor: aor, contact: *ch.Address.Clone(), flow: req.Source(), serial: id.Serial,
			expires: now.Add(exp), since: now})
	}
	r.mu.Lock()
	list := r.by[aor]
	if removeAll {
		list = nil
	}
	list = slices.DeleteFunc(list, func(b *binding) bool {
		for _, u := range removed {
			if sameContact(b.contact, u) {
				return true
			}
		}
		for _, n := range added {
			if sameContact(b.contact, n.contact) {
				n.since = b.since
				return true
			}
		}
		return false
	})
	list = append(list, added...)
	if len(list) > 10 {
		list = list[len(list)-10:]
	}
	if len(list) == 0 {
		delete(r.by, aor)
	} else {
		r.by[aor] = list
	}
	current := slices.Clone(list)
	r.mu.Unlock()

	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, b := range current {
		res.AppendHeader(&sip.ContactHeader{Address: b.contact,
			Params: params("expires", strconv.Itoa(int(b.expires.Sub(now)/time.Second)))})
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	if err := tx.Respond(res); err != nil {
		e.log.Debug("REGISTER respond", "err", err)
	}
	if len(added) > 0 {
		e.record(audit.Event{Actor: id.Username, Source: src.String(), Action: ActionRegistered, Target: aor,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"serial": id.Serial, "contacts": strconv.Itoa(len(current))}})
	}
}

func sameContact(a, b sip.Uri) bool {
	return strings.EqualFold(a.User, b.User) && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

// lookup returns the live bindings of aor, newest first.
func (r *registrar) lookup(aor string) []*binding {
	now := r.e.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*binding
	for _, b := range r.by[aor] {
		if b.expires.After(now) {
			out = append(out, b)
		}
	}
	slices.Reverse(out)
	return out
}

// dropFlow forgets the bindings made over a closed connection: the
// device can no longer be reached through it.
func (r *registrar) dropFlow(flow string) {
	r.drop(func(b *binding) bool { return b.flow == flow })
}

// dropSerial forgets the bindings of a revoked certificate.
func (r *registrar) dropSerial(serial string) {
	r.drop(func(b *binding) bool { return b.serial == serial })
}

func (r *registrar) sweep() {
	now := r.e.clock.Now()
	r.drop(func(b *binding) bool { return !b.expires.After(now) })
}

func (r *registrar) drop(f func(*binding) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for aor, list := range r.by {
		list = slices.DeleteFunc(list, f)
		if len(list) == 0 {
			delete(r.by, aor)
		} else {
			r.by[aor] = list
		}
	}
}

// Registrations lists the live registrations, by address of record.
func (e *Edge) Registrations() []Registration {
	now := e.clock.Now()
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	var out []Registration
	for _, list := range e.reg.by {
		for _, b := range list {
			if b.expires.After(now) {
				out = append(out, Registration{AOR: b.aor, Contact: b.contact.String(), Source: b.flow, Serial: b.serial,
					Since: b.since, Expires: b.expires})
			}
		}
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.AOR+a.Contact, b.AOR+b.Contact) })
	return out
}

// Online reports whether aor has a live registration.
func (e *Edge) Online(aor string) bool { return len(e.reg.lookup(aor)) > 0 }

var _ = fmt.Sprint
var _ = context.Background
