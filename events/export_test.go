package events_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestExportRoundTrip: events read from the log, exported as JSON lines
// and as CSV and parsed back, are the records they were exported from,
// on both databases, awkward content included.
func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		task, step := uuid.New(), uuid.New()
		at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
		appended := []events.Event{
			{Type: events.TaskCreated, CorrelationID: "c-1", Namespace: "shop", TemplateName: "order", TemplateVersion: "1.2.3", TaskID: &task, At: at,
				Payload: map[string]any{"state": "pending", "priority": 5, "step_count": 3}},
			{Type: events.StepFailed, CorrelationID: "c-1", Namespace: "shop", TemplateName: "order", TemplateVersion: "1.2.3", TaskID: &task, StepID: &step, At: at.Add(time.Second),
				Payload: map[string]any{"error_message": "line one\nline \"two\", with a comma\r\n and <html> & ünïcödé", "big": int64(1) << 60, "ratio": 0.25, "nested": map[string]any{"z": []any{1, "x", nil, true}, "a": map[string]any{}}}},
			{Type: "billing.invoice_sent", At: at.Add(2 * time.Second)},
			{Type: events.RegistryWorkerSeen, At: at.Add(3 * time.Second), Payload: map[string]any{"handlers": []any{map[string]any{"namespace": "shop", "handler": "h"}}, "first_seen": false}},
		}
		b.appendTx(t, appended...)
		b.waitHead(t, int64(len(appended)))
		p, err := b.log.List(ctx, events.Query{})
		require.NoError(t, err)
		require.Len(t, p.Events, len(appended))
		var records []events.Record
		for _, ev := range p.Events {
			records = append(records, events.RecordOf(ev))
		}
		require.Equal(t, task.String(), records[1].TaskID)
		require.Equal(t, step.String(), records[1].StepID)
		require.Empty(t, records[2].TaskID)
		require.JSONEq(t, `{}`, string(records[2].Payload))
		//nolint:testifylint // the bytes are the point: sorted keys, no spaces, on both databases
		require.Equal(t, `{"priority":5,"state":"pending","step_count":3}`, string(records[0].Payload))
		require.Contains(t, string(records[1].Payload), `"big":1152921504606846976`, "integers keep every digit")

		registry := events.NewRegistry(testLogger(t))
		require.Equal(t, []string{events.FormatCSV, events.FormatJSON}, registry.Formats())
		for _, format := range registry.Formats() {
			exporter, ok := registry.Exporter(format)
			require.True(t, ok)
			var out bytes.Buffer
			w := exporter.NewWriter(&out)
			for _, r := range records {
				require.NoError(t, w.Write(r))
			}
			require.NoError(t, w.Flush())
			var parsed []events.Record
			if format == events.FormatJSON {
				parsed = parseJSONLines(t, &out)
			} else {
				parsed = parseCSV(t, &out)
			}
			require.Equal(t, records, parsed, format)
		}

		// The JSON lines keys come in a fixed order, every one present.
		var out bytes.Buffer
		w := events.JSONLines{}.NewWriter(&out)
		require.NoError(t, w.Write(records[2]))
		require.NoError(t, w.Flush())
		//nolint:testifylint // the bytes are the point: key order and every key present
		require.Equal(t, `{"sequence":3,"type":"billing.invoice_sent","correlation_id":"","namespace":"","template_name":"","template_version":"",`+
			`"task_id":"","step_id":"","payload":{},"time":"2026-03-04T05:06:09.123456Z"}`+"\n", out.String())
	})
}

func TestExportEmpty(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := events.CSV{}.NewWriter(&out)
	require.NoError(t, w.Flush())
	require.Equal(t, strings.Join(events.CSVHeader, ",")+"\n", out.String(), "an empty CSV export still has its header")
	out.Reset()
	w = events.JSONLines{}.NewWriter(&out)
	require.NoError(t, w.Flush())
	require.Empty(t, out.String())
}

func parseJSONLines(t *testing.T, r io.Reader) []events.Record {
	t.Helper()
	var out []events.Record
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rec events.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), sc.Text())
		out = append(out, rec)
	}
	require.NoError(t, sc.Err())
	return out
}

func parseCSV(t *testing.T, r io.Reader) []events.Record {
	t.Helper()
	rows, err := csv.NewReader(r).ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, rows)
	require.Equal(t, events.CSVHeader, rows[0])
	var out []events.Record
	for _, row := range rows[1:] {
		seq, err := strconv.ParseInt(row[0], 10, 64)
		require.NoError(t, err)
		at, err := time.Parse(time.RFC3339Nano, row[9])
		require.NoError(t, err)
		require.True(t, json.Valid([]byte(row[8])), row[8])
		out = append(out, events.Record{
			Sequence: seq, Type: row[1], CorrelationID: row[2], Namespace: row[3], TemplateName: row[4], TemplateVersion: row[5],
			TaskID: row[6], StepID: row[7], Payload: json.RawMessage(row[8]), Time: at,
		})
	}
	return out
}
