package storagetest

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchDialects are the dialects Go benchmarks run on: SQLite, and
// PostgreSQL too when TASKER_BENCH_POSTGRES is true (the server of
// TASKER_TEST_POSTGRES_URL).
func BenchDialects() []string {
	if on, _ := strconv.ParseBool(os.Getenv("TASKER_BENCH_POSTGRES")); on {
		return Dialects
	}
	return Dialects[:1]
}

// CPUMeter reports the process's CPU time per operation next to ns/op: on a
// shared machine wall time per op swings with the load while CPU time per
// op barely moves. On PostgreSQL it leaves out the server's share.
type CPUMeter struct{ start time.Duration }

// StartCPU resets b's timer and starts measuring CPU time.
func StartCPU(b *testing.B) *CPUMeter {
	b.Helper()
	b.ResetTimer()
	return &CPUMeter{start: processCPU()}
}

// Stop stops b's timer and reports the CPU time per operation as
// cpu-ns/op.
func (m *CPUMeter) Stop(b *testing.B) {
	b.Helper()
	b.StopTimer()
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
