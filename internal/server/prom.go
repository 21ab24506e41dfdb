package server

import (
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/metrics"
	"conclave/internal/procstat"
	"conclave/internal/store"
	"conclave/internal/turn"
	"conclave/internal/version"
)

// Prometheus metrics (github.com/prometheus/client_golang), served on the
// HTTPS listener with authentication (a bearer token or a session allowed
// to see the system) and, with --debug-listen, on loopback without it.
// docs/admin.md lists them.

// nodeFigures are what the collector reads from the node at each scrape.
type nodeFigures struct {
	media    mediaFigures
	meetings func() (meetings, participants int)
	alarms   *alarm.Center
	audit    *audit.Log
	clock    func() bool // synchronised
	certs    func() map[string]time.Time
	syslog   func() map[string]bool
	relay    func() turn.Stats // nil when TURN is off
}

// collector turns the node's figures into metrics at scrape time.
type collector struct {
	n nodeFigures

	meetings, participants, packets, bytes, gsoSends, gsoDatagrams, gso, delay,
	alarms, auditBytes, clockSynced, certExpiry, syslogUp,
	rssPeak, threads, udpDrops,
	turnOpen, turnOpened, turnBytes, turnRefused, turnDropped *prometheus.Desc
}

// newCollector describes the node's figures as internal/metrics defines
// them (names, help texts and labels shared with the load tester).
func newCollector(n nodeFigures) *collector {
	return &collector{n: n,
		meetings:     metrics.Meetings.Desc(),
		participants: metrics.Participants.Desc(),
		packets:      metrics.ForwardedPackets.Desc(),
		bytes:        metrics.ForwardedBytes.Desc(),
		gsoSends:     metrics.MediaGSOSends.Desc(),
		gsoDatagrams: metrics.MediaGSODatagrams.Desc(),
		gso:          metrics.MediaGSO.Desc(),
		rssPeak:      metrics.ProcessRSSPeak.Desc(),
		threads:      metrics.ProcessThreads.Desc(),
		udpDrops:     metrics.UDPReceiveDrops.Desc(),
		delay:        metrics.ForwardDelay.Desc(),
		alarms:       metrics.Alarms.Desc(),
		auditBytes:   metrics.AuditFilesBytes.Desc(),
		clockSynced:  metrics.ClockSynchronized.Desc(),
		certExpiry:   metrics.CertificateExpiry.Desc(),
		syslogUp:     metrics.SyslogUp.Desc(),
		turnOpen:     metrics.TURNAllocations.Desc(),
		turnOpened:   metrics.TURNAllocationsTotal.Desc(),
		turnBytes:    metrics.TURNRelayedBytes.Desc(),
		turnRefused:  metrics.TURNRefusals.Desc(),
		turnDropped:  metrics.TURNDropped.Desc(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.meetings, c.participants, c.packets, c.bytes, c.gsoSends, c.gsoDatagrams, c.gso, c.delay,
		c.alarms, c.auditBytes, c.clockSynced, c.certExpiry, c.syslogUp, c.rssPeak, c.threads, c.udpDrops,
		c.turnOpen, c.turnOpened, c.turnBytes, c.turnRefused, c.turnDropped} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.n.meetings != nil {
		m, p := c.n.meetings()
		ch <- prometheus.MustNewConstMetric(c.meetings, prometheus.GaugeValue, float64(m))
		ch <- prometheus.MustNewConstMetric(c.participants, prometheus.GaugeValue, float64(p))
	}
	if c.n.media != nil {
		st := c.n.media.SendStats()
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(st.Packets))
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.Bytes))
		ch <- prometheus.MustNewConstMetric(c.gsoSends, prometheus.CounterValue, float64(st.GSOSends))
		ch <- prometheus.MustNewConstMetric(c.gsoDatagrams, prometheus.CounterValue, float64(st.GSODatagrams))
		gso := 0.0
		if st.GSO {
			gso = 1
		}
		ch <- prometheus.MustNewConstMetric(c.gso, prometheus.GaugeValue, gso)
		h := c.n.media.ForwardDelay()
		buckets := map[float64]uint64{}
		var total uint64
		for i, n := range h.Counts {
			total += n
			if i < len(metrics.DelayBuckets) {
				buckets[metrics.DelayBuckets[i]] = total
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.delay, total, h.Sum.Seconds(), buckets)
	}
	if s, err := procstat.Read(os.Getpid()); err == nil {
		ch <- prometheus.MustNewConstMetric(c.rssPeak, prometheus.GaugeValue, float64(s.Peak))
		ch <- prometheus.MustNewConstMetric(c.threads, prometheus.GaugeValue, float64(s.Threads))
		if s.UDPDrops >= 0 {
			ch <- prometheus.MustNewConstMetric(c.udpDrops, prometheus.GaugeValue, float64(s.UDPDrops))
		}
	}
	if c.n.alarms != nil {
		counts := c.n.alarms.Count()
		for _, kind := range []string{alarm.KindRoomBlocked, alarm.KindAddressQuarantined, alarm.KindDisk, alarm.KindAuditStorage,
			alarm.KindSyslog, alarm.KindCertificate, alarm.KindSelfCheck, alarm.KindClock, alarm.KindBackup} {
			for _, sev := range alarm.Severities {
				ch <- prometheus.MustNewConstMetric(c.alarms, prometheus.GaugeValue, float64(counts[[2]string{kind, string(sev)}]), kind, string(sev))
			}
		}
	}
	if c.n.audit != nil {
		ch <- prometheus.MustNewConstMetric(c.auditBytes, prometheus.GaugeValue, float64(c.n.audit.BytesUsed()))
	}
	if c.n.clock != nil {
		v := 0.0
		if c.n.clock() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.clockSynced, prometheus.GaugeValue, v)
	}
	if c.n.certs != nil {
		for role, t := range c.n.certs() {
			ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, float64(t.Unix()), role)
		}
	}
	if c.n.relay != nil {
		st := c.n.relay()
		for _, t := range turn.Transports() {
			ch <- prometheus.MustNewConstMetric(c.turnOpen, prometheus.GaugeValue, float64(st.Allocations[t]), t)
			ch <- prometheus.MustNewConstMetric(c.turnOpened, prometheus.CounterValue, float64(st.AllocationsTotal[t]), t)
		}
		ch <- prometheus.MustNewConstMetric(c.turnBytes, prometheus.CounterValue, float64(st.BytesToPeer), "to_peer")
		ch <- prometheus.MustNewConstMetric(c.turnBytes, prometheus.CounterValue, float64(st.BytesToClient), "to_client")
		for _, r := range turn.RefusalReasons() {
			ch <- prometheus.MustNewConstMetric(c.turnRefused, prometheus.CounterValue, float64(st.Refused[r]), r)
		}
		for _, r := range turn.DropReasons() {
			ch <- prometheus.MustNewConstMetric(c.turnDropped, prometheus.CounterValue, float64(st.Dropped[r]), r)
		}
	}
	if c.n.syslog != nil {
		for name, up := range c.n.syslog() {
			v := 0.0
			if up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.syslogUp, prometheus.GaugeValue, v, name)
		}
	}
}

// auditCounter counts audit records as they are appended: sign-ins by
// outcome and every action.
type auditCounter struct {
	logins  *prometheus.CounterVec
	actions *prometheus.CounterVec
}

func newAuditCounter() *auditCounter {
	return &auditCounter{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.Logins.Name,
			Help: metrics.Logins.Help}, metrics.Logins.Labels),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.AuditRecords.Name,
			Help: metrics.AuditRecords.Help}, metrics.AuditRecords.Labels),
	}
}

// Appended implements audit.Observer.
func (a *auditCounter) Appended(r store.AuditRecord) {
	a.actions.WithLabelValues(r.Action).Inc()
	switch r.Action {
	case audit.ActionLogin:
		a.logins.WithLabelValues("success").Inc()
	case audit.ActionLoginFailed:
		a.logins.WithLabelValues("failure").Inc()
	}
}

// newRegistry builds the node's registry: its own figures, the audit
// counters (nil on a conference node, whose audit entries and sign-ins
// are the management node's), the Go runtime and the process.
func newRegistry(n nodeFigures, ac *auditCounter) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := version.Get()
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: metrics.BuildInfo.Name, Help: metrics.BuildInfo.Help,
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion}})
	bi.Set(1)
	reg.MustRegister(bi)
	if ac != nil {
		reg.MustRegister(ac.logins, ac.actions)
		ac.logins.WithLabelValues("success")
		ac.logins.WithLabelValues("failure")
	}
	return reg
}

// metricsHandler serves reg in the Prometheus formats.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
