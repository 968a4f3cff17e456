package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ProcStats is what a process cost over a measured window, read from /proc: the server
// when it runs in its own process, or the load generator (the bench's own process).
type ProcStats struct {
	PID int `json:"pid"`
	// Seconds is the wall time of the window; CPUSeconds the process's user and system
	// CPU time in it (utime + stime, every thread); CPUCores their ratio, the cores it kept
	// busy on average.
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"`
	// PeakRSSBytes is the process's peak resident set since it started (VmHWM) as read at
	// the window's end; RSSBytes its resident set then (VmRSS).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	RSSBytes     int64 `json:"rss_bytes"`
}

// MiB is n bytes in MiB.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }

// procWindow measures one process over a window: CPU time at its start, the rest at end.
type procWindow struct {
	pid   int
	begin time.Time
	cpu   time.Duration
}

// watchProc opens a window on process pid now. It fails where /proc cannot be read (not
// Linux, or the process is gone).
func watchProc(pid int) (*procWindow, error) {
	cpu, err := procCPU(pid)
	if err != nil {
		return nil, err
	}
	return &procWindow{pid: pid, begin: time.Now(), cpu: cpu}, nil
}

// end closes the window and reports the process's figures over it.
func (w *procWindow) end() (*ProcStats, error) {
	cpu, err := procCPU(w.pid)
	if err != nil {
		return nil, err
	}
	el := time.Since(w.begin)
	hwm, rss, err := procRSS(w.pid)
	if err != nil {
		return nil, err
	}
	s := &ProcStats{PID: w.pid, Seconds: el.Seconds(), CPUSeconds: (cpu - w.cpu).Seconds(), PeakRSSBytes: hwm, RSSBytes: rss}
	if el > 0 {
		s.CPUCores = s.CPUSeconds / s.Seconds
	}
	return s, nil
}

// procCPU is the user + system CPU time process pid has used so far, all its threads
// (fields 14 and 15 of /proc/<pid>/stat, in clock ticks).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b, clockTick())
}

// parseStatCPU reads utime + stime from the contents of /proc/<pid>/stat, with tick the
// length of a clock tick.
func parseStatCPU(b []byte, tick time.Duration) (time.Duration, error) {
	// The second field, the command name in parentheses, may hold spaces and
	// parentheses itself: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * tick, nil
}

// procRSS reads VmHWM and VmRSS of process pid, in bytes.
func procRSS(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatusRSS(b)
}

// parseStatusRSS reads VmHWM and VmRSS from the contents of /proc/<pid>/status.
func parseStatusRSS(b []byte) (hwm, rss int64, err error) {
	var seen int
	for line := range bytes.Lines(b) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &hwm
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[2]) != "kB" {
			return 0, 0, fmt.Errorf("/proc status: unexpected line %q", bytes.TrimSpace(line))
		}
		n, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: %w", err)
		}
		*dst = n << 10
		seen++
	}
	if seen != 2 {
		return 0, 0, errors.New("/proc status: no VmHWM or VmRSS")
	}
	return hwm, rss, nil
}

// atClkTck is AT_CLKTCK, the auxiliary vector's entry for the kernel's USER_HZ: the
// frequency of the clock ticks /proc counts CPU time in (what sysconf(_SC_CLK_TCK)
// answers).
const atClkTck = 17

var clockTick = sync.OnceValue(func() time.Duration {
	hz := uintptr(100) // what sysconf answers when the kernel gives no AT_CLKTCK
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				hz = kv[1]
			}
		}
	}
	return time.Second / time.Duration(hz)
})
