package clocksync

import (
	"time"

	"golang.org/x/sys/unix"
)

// System reads the kernel's state with adjtimex(2) (modes 0: read only).
func System() State {
	var tx unix.Timex
	rc, err := unix.Adjtimex(&tx)
	if err != nil {
		return State{Error: err.Error()}
	}
	names := map[int]string{unix.TIME_OK: "ok", unix.TIME_INS: "insert-leap", unix.TIME_DEL: "delete-leap",
		unix.TIME_OOP: "leap-in-progress", unix.TIME_WAIT: "leap-done", unix.TIME_ERROR: "error"}
	st := State{Status: names[rc], MaxError: time.Duration(tx.Maxerror) * time.Microsecond,
		EstError: time.Duration(tx.Esterror) * time.Microsecond}
	if tx.Status&unix.STA_NANO != 0 {
		st.Offset = time.Duration(tx.Offset)
	} else {
		st.Offset = time.Duration(tx.Offset) * time.Microsecond
	}
	st.Synced = rc != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
	return st
}
