package sfu

import "conclave/internal/testutil/fakeclock"

// useClock makes d's dynacast run on c.
func useClock(d *dynacast, c *fakeclock.Clock) {
	d.clock = c
}
