package events

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Record is an event in the stable form exporters write: plain strings for
// ids (empty when the event has none), the payload as compact JSON with
// sorted keys, and the time in UTC. Its JSON encoding is the JSON lines
// format: the keys in the order of the fields, every key always present.
type Record struct {
	Sequence        int64           `json:"sequence"`
	Type            string          `json:"type"`
	CorrelationID   string          `json:"correlation_id"`
	Namespace       string          `json:"namespace"`
	TemplateName    string          `json:"template_name"`
	TemplateVersion string          `json:"template_version"`
	TaskID          string          `json:"task_id"`
	StepID          string          `json:"step_id"`
	Payload         json.RawMessage `json:"payload"`
	// Time is when the change was committed; JSON and CSV write it as RFC
	// 3339 with nanoseconds.
	Time time.Time `json:"time"`
}

// RecordOf returns the record of an event of the log.
func RecordOf(ev *Stored) Record {
	r := Record{
		Type:            ev.Type,
		CorrelationID:   ev.CorrelationID,
		Namespace:       ev.Namespace,
		TemplateName:    ev.TemplateName,
		TemplateVersion: ev.TemplateVersion,
		Payload:         CanonicalJSON(ev.Payload),
		Time:            ev.CreatedAt.UTC(),
		Sequence:        ev.Sequence,
	}
	if ev.TaskID != nil {
		r.TaskID = ev.TaskID.String()
	}
	if ev.StepID != nil {
		r.StepID = ev.StepID.String()
	}
	return r
}

// CanonicalJSON returns raw compacted with object keys sorted and numbers
// kept as written, so the same payload reads the same from either
// database (PostgreSQL's jsonb reorders keys and adds spaces). Empty input
// gives {}; input that is not JSON is returned as a JSON string of itself
// rather than dropped.
func CanonicalJSON(raw []byte) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		quoted, _ := json.Marshal(string(raw))
		return quoted
	}
	out, err := json.Marshal(v) // encoding/json sorts map keys
	if err != nil {
		quoted, _ := json.Marshal(string(raw))
		return quoted
	}
	return out
}

// Exporter writes events in one format, for `tasker events export` and
// in-process subscribers that ship the log elsewhere. Register one with
// Registry.RegisterExporter.
type Exporter interface {
	// NewWriter starts an export to w.
	NewWriter(w io.Writer) RecordWriter
}

// RecordWriter writes the records of one export, in the order given.
type RecordWriter interface {
	// Write adds one record; it may buffer.
	Write(r Record) error
	// Flush writes out what is buffered. Call it when the export ends, and
	// whenever the output should be visible (a live tail).
	Flush() error
}

// ExporterFunc adapts a function to Exporter.
type ExporterFunc func(w io.Writer) RecordWriter

// NewWriter calls f(w).
func (f ExporterFunc) NewWriter(w io.Writer) RecordWriter { return f(w) }

// Formats of the built-in exporters.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// JSONLines writes one JSON object per line, the encoding of Record.
type JSONLines struct{}

var _ Exporter = JSONLines{}

// NewWriter starts a JSON lines export to w.
func (JSONLines) NewWriter(w io.Writer) RecordWriter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &jsonLinesWriter{w: bw, enc: enc}
}

type jsonLinesWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func (j *jsonLinesWriter) Write(r Record) error {
	r.Time = r.Time.UTC()
	if len(r.Payload) == 0 {
		r.Payload = json.RawMessage(`{}`)
	}
	return j.enc.Encode(r) // one line: Encode adds the newline
}

func (j *jsonLinesWriter) Flush() error { return j.w.Flush() }

// CSVHeader is the header row of the CSV format, one column per Record
// field in order; the payload column holds the payload as JSON.
var CSVHeader = []string{
	"sequence", "type", "correlation_id", "namespace", "template_name", "template_version",
	"task_id", "step_id", "payload", "time",
}

// CSV writes RFC 4180 CSV: the CSVHeader row, then one row per record,
// the payload as a JSON string and the time as RFC 3339 with nanoseconds.
// The header is written even when there are no records.
type CSV struct{}

var _ Exporter = CSV{}

// NewWriter starts a CSV export to w.
func (CSV) NewWriter(w io.Writer) RecordWriter {
	return &csvWriter{w: csv.NewWriter(w)}
}

type csvWriter struct {
	w      *csv.Writer
	header bool
}

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.w.Write(CSVHeader)
}

func (c *csvWriter) Write(r Record) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	payload := string(r.Payload)
	if payload == "" {
		payload = "{}"
	}
	return c.w.Write([]string{
		strconv.FormatInt(r.Sequence, 10), r.Type, r.CorrelationID, r.Namespace, r.TemplateName, r.TemplateVersion,
		r.TaskID, r.StepID, payload, r.Time.UTC().Format(time.RFC3339Nano),
	})
}

func (c *csvWriter) Flush() error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("events: csv: %w", err)
	}
	return nil
}
