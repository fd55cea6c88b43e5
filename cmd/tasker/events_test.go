package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// eventServer is an in-process server on addr ("127.0.0.1:0" for any
// port), stopped by stop or when the test ends.
type eventServer struct {
	addr   string
	client taskerv1.EventServiceClient
	stop   func()
}

func startEventServer(t *testing.T, db *storage.DB, addr string) *eventServer {
	t.Helper()
	srv := servertest.Start(t, db, servertest.Options{Addr: addr, Logger: slog.New(slog.DiscardHandler)})
	return &eventServer{
		addr:   srv.Addr,
		client: taskerv1.NewEventServiceClient(srv.Conn),
		stop:   func() { require.NoError(t, srv.Stop()) },
	}
}

func (s *eventServer) publish(t *testing.T, typ string, payload map[string]any) *taskerv1.Event {
	t.Helper()
	p, err := structpb.NewStruct(payload)
	require.NoError(t, err)
	resp, err := s.client.PublishEvent(context.Background(), &taskerv1.PublishEventRequest{Type: typ, Payload: p})
	require.NoError(t, err)
	return resp.GetEvent()
}

func TestEventsExport(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := startEventServer(t, db, "127.0.0.1:0")
	var published []*taskerv1.Event
	for i := range 7 {
		typ := "billing.sent"
		if i%2 == 1 {
			typ = "audit.note"
		}
		published = append(published, srv.publish(t, typ, map[string]any{"i": i, "text": "a, \"quoted\"\nline"}))
	}
	ctx := context.Background()

	// JSON lines to stdout, everything, in pages of 3.
	var stdout, stderr bytes.Buffer
	err := export(ctx, exportFlags{format: "json", addr: srv.addr, pageSize: 3, forceProgress: true}, &stdout, &stderr)
	require.NoError(t, err)
	require.Contains(t, stderr.String(), "exported 7 events")
	var got []events.Record
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r events.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		got = append(got, r)
	}
	require.Len(t, got, 7)
	for i, r := range got {
		require.Equal(t, recordOfProto(published[i]), r)
	}

	// CSV to a file, a filtered slice.
	out := filepath.Join(t.TempDir(), "events.csv")
	err = export(ctx, exportFlags{
		format: "csv", addr: srv.addr, pageSize: 2, output: out, after: 1, until: 6,
		filter: eventFilterFlags{types: []string{"billing.*"}},
	}, &stdout, &stderr)
	require.NoError(t, err)
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, events.CSVHeader, rows[0])
	var seqs []string
	for _, row := range rows[1:] {
		seqs = append(seqs, row[0])
		require.Equal(t, "billing.sent", row[1])
		n, err := strconv.Atoi(row[0])
		require.NoError(t, err)
		require.Equal(t, string(recordOfProto(published[n-1]).Payload), row[8])
	}
	require.Equal(t, []string{"3", "5"}, seqs)
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(out), ".events.csv.*"))
	require.NoError(t, err)
	require.Empty(t, matches, "no temporary file left behind")

	// Refusals.
	require.Error(t, export(ctx, exportFlags{format: "xml", addr: srv.addr}, &stdout, &stderr))
	require.Error(t, export(ctx, exportFlags{format: "json", addr: srv.addr, after: 5, until: 2}, &stdout, &stderr))
	err = export(ctx, exportFlags{format: "json", addr: srv.addr, filter: eventFilterFlags{types: []string{"Bad"}}, output: out}, &stdout, &stderr)
	require.Error(t, err)
	_, statErr := os.Stat(out)
	require.NoError(t, statErr, "a failed export leaves the previous file alone")
}

// TestEventsTail: tail prints every event as a JSON line and, when the
// server restarts, resumes after the last sequence it saw: nothing lost,
// nothing twice.
func TestEventsTail(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	first := startEventServer(t, db, "127.0.0.1:0")
	first.publish(t, "audit.before", nil) // before the tail starts: not printed

	var out lineBuffer
	var stderr lineBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tail(ctx, tailFlags{addr: first.addr, heartbeat: 100 * time.Millisecond, filter: eventFilterFlags{types: []string{"audit.*"}}}, &out, &stderr)
	}()
	// The tail starts at the head it finds; publish until it prints.
	require.Eventually(t, func() bool {
		first.publish(t, "audit.ping", nil)
		return out.lines() > 0
	}, 10*time.Second, 50*time.Millisecond)
	first.publish(t, "billing.ignored", nil)
	first.publish(t, "audit.one", nil)
	first.stop()

	second := startEventServer(t, db, first.addr)
	second.publish(t, "audit.two", nil)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "audit.two") }, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, stderr.String(), "resuming after sequence")

	var printed []events.Record
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r events.Record
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		printed = append(printed, r)
	}
	resp, err := second.client.ListEvents(context.Background(), &taskerv1.ListEventsRequest{
		Filter: &taskerv1.EventFilter{Types: []string{"audit.*"}}, AfterSequence: printed[0].Sequence - 1,
	})
	require.NoError(t, err)
	require.Len(t, printed, len(resp.GetEvents()), "exactly once across the restart")
	for i, ev := range resp.GetEvents() {
		require.Equal(t, recordOfProto(ev), printed[i])
	}
	require.Equal(t, "audit.two", printed[len(printed)-1].Type)
}

// lineBuffer is a bytes.Buffer for a writer goroutine and a reading test.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lineBuffer) lines() int { return strings.Count(b.String(), "\n") }

// exportedSeqs returns the sequences of the JSON lines in out.
func exportedSeqs(t *testing.T, out string) []int64 {
	t.Helper()
	var seqs []int64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r events.Record
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		seqs = append(seqs, r.Sequence)
	}
	return seqs
}

// TestEventsExportUntilPastHead: an --until beyond the newest event ends
// the export at the head instead of asking the server again and again.
func TestEventsExportUntilPastHead(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := startEventServer(t, db, "127.0.0.1:0")
	for range 3 {
		srv.publish(t, "audit.note", nil)
	}
	// Spinning would end only at this deadline, with its error.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := export(ctx, exportFlags{format: "json", addr: srv.addr, pageSize: 2, after: 1, until: 1000}, &stdout, &stderr)
	require.NoError(t, err)
	require.Equal(t, []int64{2, 3}, exportedSeqs(t, stdout.String()))

	stdout.Reset()
	err = export(ctx, exportFlags{format: "json", addr: srv.addr, after: 3, until: 1000}, &stdout, &stderr)
	require.NoError(t, err, "nothing after the head")
	require.Empty(t, stdout.String())
}

// TestEventsExportFollow: with --follow the export waits on the server for
// events past the head and ends at --until, or, with no --until, when
// interrupted.
func TestEventsExportFollow(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := startEventServer(t, db, "127.0.0.1:0")
	for range 3 {
		srv.publish(t, "audit.note", nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	following := make(chan struct{})
	var stdout, stderr lineBuffer
	done := make(chan error, 1)
	go func() {
		done <- export(ctx, exportFlags{
			format: "json", addr: srv.addr, until: 5, follow: true,
			filter: eventFilterFlags{types: []string{"audit.*"}}, following: func() { close(following) },
		}, &stdout, &stderr)
	}()
	<-following
	srv.publish(t, "audit.note", nil)   // 4
	srv.publish(t, "billing.sent", nil) // 5: filtered out; the export learns it scanned it
	srv.publish(t, "audit.note", nil)   // 6: past --until
	require.NoError(t, <-done)
	require.Equal(t, []int64{1, 2, 3, 4}, exportedSeqs(t, stdout.String()))

	// No --until: it follows until interrupted, which ends it normally.
	fctx, stop := context.WithCancel(ctx)
	var followed lineBuffer
	following = make(chan struct{})
	go func() {
		done <- export(fctx, exportFlags{
			format: "json", addr: srv.addr, after: 5, follow: true, following: func() { close(following) },
		}, &followed, &stderr)
	}()
	<-following
	srv.publish(t, "audit.note", nil) // 7
	require.Eventually(t, func() bool { return followed.lines() == 2 }, 10*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	require.Equal(t, []int64{6, 7}, exportedSeqs(t, followed.String()))
}
