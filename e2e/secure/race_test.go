//go:build race

package secure

// raceEnabled: the race detector slows every goroutine several times, so
// timing measurements are meaningless under it.
const raceEnabled = true
