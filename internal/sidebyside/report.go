package sidebyside

import (
	"fmt"
	"io"
	"strings"
)

// WriteTable writes results as a Markdown table, one row per system and
// run, and after each pair the ratios of the first system named in pair
// to the second (CPU per datagram, Gbit/s per core, RSS).
func WriteTable(w io.Writer, results []Result, a, b string) {
	fmt.Fprintln(w, "| shape | run | order | system | forwarded | datagrams/s | server CPU | Gbit/s per core | CPU per datagram | RSS (max) | loss | generator CPU | load avg at start | error |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i, r := range results {
		loss := "?"
		if r.LossPercent >= 0 {
			loss = fmt.Sprintf("%.3f %%", r.LossPercent)
		}
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | %d | %d | %s | | | | | | | | | %s | %s |\n", r.Shape, r.Run, r.Order, r.System, r.LoadStart, oneLine(r.Err))
		} else {
			fmt.Fprintf(w, "| %s | %d | %d | %s | %.1f Mbit/s | %.0f | %.2f cores | %.3f | %.1f µs | %d MiB | %s | %.2f cores | %s | |\n",
				r.Shape, r.Run, r.Order, r.System, r.Mbps(), float64(r.Datagrams)/r.Window, r.Cores(), r.GbpsPerCore(),
				r.MicrosPerPacket(), r.MaxRSS>>20, loss, r.GenCPU/r.Window, r.LoadStart)
		}
		if i%2 == 1 {
			x, y, ok := pair(results[i-1], r, a, b)
			if ok && x.Err == "" && y.Err == "" && y.GbpsPerCore() > 0 && x.MicrosPerPacket() > 0 && y.MaxRSS > 0 {
				fmt.Fprintf(w, "| %s | %d | | %s ÷ %s | | | | **%.2fx** | **%.2fx** (%s's is %.0f %% of %s's) | %.2fx | | | | |\n",
					r.Shape, r.Run, a, b, x.GbpsPerCore()/y.GbpsPerCore(), y.MicrosPerPacket()/x.MicrosPerPacket(),
					a, 100*x.MicrosPerPacket()/y.MicrosPerPacket(), b, float64(x.MaxRSS)/float64(y.MaxRSS))
			}
		}
	}
}

func pair(p, q Result, a, b string) (x, y Result, ok bool) {
	switch {
	case p.System == a && q.System == b:
		return p, q, p.Shape == q.Shape && p.Run == q.Run
	case p.System == b && q.System == a:
		return q, p, p.Shape == q.Shape && p.Run == q.Run
	}
	return x, y, false
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "/")
}
