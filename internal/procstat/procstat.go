// Package procstat reads what the Linux kernel counts for a process: CPU
// time, resident memory and its peak, threads and open files, from
// /proc/<pid>/stat, status and fd. The load tester reads a server's
// figures with it, and the server's debug listener its own.
package procstat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is a process's counters at one moment.
type Sample struct {
	// CPU is the user and system time the process has used so far.
	CPU time.Duration
	// RSS is its resident memory now (VmRSS) and Peak the highest it
	// reached (VmHWM), in bytes.
	RSS, Peak int64
	// Threads is the number of its threads.
	Threads int
	// FDs is the number of its open file descriptors, -1 when they cannot
	// be listed (another user's process).
	FDs int
	// UDPDrops counts the datagrams the kernel dropped, for lack of
	// receive buffer space, on the UDP sockets the process has open now
	// (each socket's count since it was opened); -1 when unknown.
	UDPDrops int64
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: %w", err)
	}
	ticks, threads, err := ParseStat(stat)
	if err != nil {
		return Sample{}, err
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: %w", err)
	}
	rss, peak, err := ParseStatus(status)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{CPU: time.Duration(ticks) * time.Second / time.Duration(ClockTick()), RSS: rss, Peak: peak,
		Threads: threads, FDs: -1, UDPDrops: -1}
	if fds, err := os.ReadDir(dir + "/fd"); err == nil {
		s.FDs = len(fds)
		sockets := map[uint64]bool{}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
				if ino, err := strconv.ParseUint(strings.TrimSuffix(l[len("socket:["):], "]"), 10, 64); err == nil {
					sockets[ino] = true
				}
			}
		}
		var drops int64
		ok := true
		for _, table := range []string{"/net/udp", "/net/udp6"} {
			b, err := os.ReadFile(dir + table)
			if err != nil {
				ok = false
				break
			}
			d, err := ParseUDPDrops(b, sockets)
			if err != nil {
				ok = false
				break
			}
			drops += d
		}
		if drops < 0 {
			ok = false
		}
		if ok {
			s.UDPDrops = drops
		}
	}
	return s, nil
}

// ParseUDPDrops sums the drops column of a /proc/net/udp or udp6 table
// over the sockets whose inodes are in sockets.
func ParseUDPDrops(b []byte, sockets map[uint64]bool) (int64, error) {
	var sum int64
	first := true
	for line := range bytes.Lines(b) {
		if first {
			first = false // the header
			continue
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 13 {
			return 0, errors.New("procstat: udp table: short line")
		}
		ino, err1 := strconv.ParseUint(string(f[9]), 10, 64)
		drops, err2 := strconv.ParseInt(string(f[12]), 10, 64)
		if err1 != nil || err2 != nil || drops < 0 {
			return 0, errors.New("procstat: udp table: malformed line")
		}
		if sockets[ino] {
			if sum+drops < sum {
				return 0, errors.New("procstat: udp table: drops overflow")
			}
			sum += drops
		}
	}
	return sum, nil
}

// ParseStat reads utime + stime (in clock ticks) and the number of threads
// from the contents of /proc/<pid>/stat (proc(5)). The command name, in
// parentheses, may itself hold spaces and parentheses: the fields are
// counted from the last ')'.
func ParseStat(b []byte) (ticks uint64, threads int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("procstat: stat without a command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, num_threads 20.
	if len(f) < 18 {
		return 0, 0, errors.New("procstat: stat has too few fields")
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	n, err3 := strconv.Atoi(string(f[17]))
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("procstat: stat: %w", err)
	}
	if utime+stime < utime {
		return 0, 0, errors.New("procstat: stat: CPU time overflows")
	}
	return utime + stime, n, nil
}

// ParseStatus reads VmRSS and VmHWM, in bytes, from the contents of
// /proc/<pid>/status.
func ParseStatus(b []byte) (rss, peak int64, err error) {
	found := 0
	for line := range bytes.Lines(b) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &peak
		default:
			continue
		}
		f := bytes.Fields(line[6:])
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, fmt.Errorf("procstat: status: malformed line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, 0, fmt.Errorf("procstat: status: malformed line %q", bytes.TrimSpace(line))
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("procstat: status lacks VmRSS or VmHWM")
	}
	return rss, peak, nil
}

var (
	tickOnce sync.Once
	tick     int64
)

// ClockTick is the kernel's USER_HZ, the unit of CPU times in
// /proc/<pid>/stat: AT_CLKTCK from this process's auxiliary vector, or
// 100, its value on every common Linux system.
func ClockTick() int64 {
	tickOnce.Do(func() {
		tick = 100
		if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
			if v, ok := auxValue(b, 17); ok && v > 0 && v <= 1_000_000 { // AT_CLKTCK
				tick = int64(v)
			}
		}
	})
	return tick
}

// auxValue finds entry typ in a 64-bit auxiliary vector.
func auxValue(b []byte, typ uint64) (uint64, bool) {
	for ; len(b) >= 16; b = b[16:] {
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		if k == 0 {
			break
		}
		if k == typ {
			return v, true
		}
	}
	return 0, false
}
