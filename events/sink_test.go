package events_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestExportToFileResumes runs a file export, stops it mid-stream, leaves
// a torn record after its checkpoint as a crash would, appends more and
// runs a new registry on the same file: the file holds every event exactly
// once, in sequence order, in either format.
func TestExportToFileResumes(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for _, format := range []string{events.FormatJSON, events.FormatCSV} {
			t.Run(format, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "events."+format)
				run := func(live bool) {
					t.Helper()
					r := events.NewRegistry(b.logger)
					require.NoError(t, r.ExportToFile("file", path, format, events.Filter{}))
					runCtx, stop := context.WithCancel(ctx)
					done := make(chan error, 1)
					go func() { done <- r.Run(runCtx, b.log) }()
					head, err := b.log.Head(ctx)
					require.NoError(t, err)
					require.Eventually(t, func() bool { return checkpoint(t, path).Sequence >= head }, 10*time.Second, 10*time.Millisecond)
					if live { // more events while it runs: stopped mid-stream
						b.appendTx(t, events.Event{Type: "test.live"}, events.Event{Type: "test.live"})
					}
					stop()
					require.NoError(t, <-done)
				}
				b.appendTx(t, events.Event{Type: "test.first"}, events.Event{Type: "test.first"})
				run(true)
				f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				require.NoError(t, err)
				_, err = f.WriteString(`{"sequence":999,"type":"torn`)
				require.NoError(t, err)
				require.NoError(t, f.Close())
				b.appendTx(t, events.Event{Type: "test.second"})
				n, err := db.Client.Event.Query().Count(ctx)
				require.NoError(t, err)
				head := int64(n)
				b.waitHead(t, head) // every event appended is numbered
				run(false)          // returns once the checkpoint reaches the head
				want := make([]int64, head)
				for i := range want {
					want[i] = int64(i + 1)
				}
				require.Equal(t, want, fileSequences(t, path, format))
			})
		}
	})
}

func checkpoint(t *testing.T, path string) events.Checkpoint {
	t.Helper()
	var cp events.Checkpoint
	raw, err := os.ReadFile(events.CheckpointPath(path))
	if os.IsNotExist(err) {
		return cp
	}
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &cp))
	return cp
}

// fileSequences reads the sequences of an export file, which must parse
// whole.
func fileSequences(t *testing.T, path, format string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	var out []int64
	if format == events.FormatCSV {
		rows, err := csv.NewReader(f).ReadAll()
		require.NoError(t, err)
		require.Equal(t, events.CSVHeader, rows[0], "one header, first")
		for _, row := range rows[1:] {
			n, err := strconv.ParseInt(row[0], 10, 64)
			require.NoError(t, err)
			out = append(out, n)
		}
		return out
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r events.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		out = append(out, r.Sequence)
	}
	require.NoError(t, sc.Err())
	return out
}
