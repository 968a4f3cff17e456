package bench

import (
	"os"
	"testing"
	"time"
)

// utime and stime are read past the command name, whatever it holds.
func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	stat := "4242 (a) b (c) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 1000 200000 3000"
	got, err := parseStatCPU([]byte(stat), 10*time.Millisecond)
	if err != nil || got != 2810*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 2.81s", got, err)
	}
	for _, bad := range []string{"", "4242 (berth", "4242 (berth) R 1 2 3", "4242 (berth) R 1 4242 4242 0 -1 4194560 100 0 0 0 x 31"} {
		if _, err := parseStatCPU([]byte(bad), time.Millisecond); err == nil {
			t.Errorf("parseStatCPU(%q) did not fail", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\tberth\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t9\n"
	hwm, rss, err := parseStatusRSS([]byte(status))
	if err != nil || hwm != 2<<20 || rss != 1<<20 {
		t.Fatalf("parseStatusRSS = %d, %d, %v; want 2 MiB, 1 MiB", hwm, rss, err)
	}
	for _, bad := range []string{"", "VmHWM:\t2048 kB\n", "VmHWM:\t2048 MB\nVmRSS:\t1 kB\n"} {
		if _, _, err := parseStatusRSS([]byte(bad)); err == nil {
			t.Errorf("parseStatusRSS(%q) did not fail", bad)
		}
	}
}

// This process, measured over a window in which it burns CPU, shows it.
func TestWatchProcMeasuresThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	w, err := watchProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	start, _ := procCPU(os.Getpid())
	// Spin until the kernel has counted at least one clock tick of CPU time.
	for {
		if now, _ := procCPU(os.Getpid()); now > start {
			break
		}
	}
	s, err := w.end()
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.CPUSeconds <= 0 || s.CPUCores <= 0 || s.PeakRSSBytes <= 0 || s.RSSBytes <= 0 || s.PeakRSSBytes < s.RSSBytes {
		t.Fatalf("figures of this process: %+v", s)
	}
}
