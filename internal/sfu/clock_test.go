package sfu

import "conclave/internal/testutil/fakeclock"

// useClock makes d's dynacast run on c.
func useClock(d *dynacast, c *fakeclock.Clock) {
	d.now, d.afterFunc = c.Now, c.AfterFunc
}
