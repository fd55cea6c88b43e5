package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/taskerhq/tasker/backoff"
	"github.com/taskerhq/tasker/fault"
)

// fileSink is an export to a file that Run keeps up to date.
type fileSink struct {
	name, path, format string
	filter             Filter
	exporter           Exporter
}

// Checkpoint is where a file export stands: every event numbered up to
// Sequence that its filter selects is in the file's first Offset bytes,
// each once, in order. It is stored beside the file (CheckpointPath) and
// written only after those bytes are synced, so after a crash the file is
// cut back to Offset and the export goes on after Sequence: nothing is
// lost, nothing written twice.
type Checkpoint struct {
	Sequence int64 `json:"sequence"`
	Offset   int64 `json:"offset"`
}

// CheckpointPath is where the checkpoint of an export to path is stored.
func CheckpointPath(path string) string { return path + ".checkpoint" }

// sinkCommitEvery bounds the events written between two checkpoints while
// a file export catches up; a live export also checkpoints on each
// heartbeat of its subscription.
const (
	sinkCommitEvery = 1000
	sinkHeartbeat   = 500 * time.Millisecond
)

// ExportToFile makes Run append every event that filter selects to the file
// at path, in the format of a registered exporter, from the start of the
// retained log. After a restart the export resumes from its checkpoint
// (see Checkpoint), so the file holds every selected event exactly once,
// in sequence order. name identifies the export in logs, like a
// subscriber's name. Register exporters first: the format is looked up
// here. A format's preamble (what its writer writes when flushed before
// any record, such as the CSV header) is written once, at the start of the
// file.
func (r *Registry) ExportToFile(name, path, format string, filter Filter) error {
	if r.running.Load() {
		return errRunning
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("events: export name %q must match %s", name, namePattern)
	}
	if _, dup := r.sinks[name]; dup {
		return fmt.Errorf("events: export %q is already registered", name)
	}
	if _, dup := r.subscribers[name]; dup {
		return fmt.Errorf("events: %q is already a subscriber's name", name)
	}
	e, ok := r.Exporter(format)
	if !ok {
		return fmt.Errorf("events: unknown export format %q (registered: %v)", format, r.Formats())
	}
	if path == "" {
		return fmt.Errorf("events: export %q has no file", name)
	}
	if _, err := ParseFilter(filter); err != nil {
		return fmt.Errorf("events: export %q: %w", name, err)
	}
	r.sinks[name] = fileSink{name: name, path: path, format: format, filter: filter, exporter: e}
	return nil
}

// runSink keeps one file export up to date until ctx ends.
func (r *Registry) runSink(ctx context.Context, l *Log, s fileSink) {
	log := r.logger.With(slog.String("export", s.name), slog.String("path", s.path), slog.String("format", s.format))
	wait := backoff.New(r.RetryMin, r.RetryMax)
	for ctx.Err() == nil {
		err := r.exportOnce(ctx, l, s, log)
		if ctx.Err() != nil {
			return
		}
		pause := wait.Next()
		log.ErrorContext(ctx, "event export failed; resuming from its checkpoint", slog.Any("error", err), slog.Duration("backoff", pause))
		sleep(ctx, pause)
	}
}

// exportOnce opens the file at its checkpoint and follows the log until
// ctx ends or something fails; either way it checkpoints what it wrote.
func (r *Registry) exportOnce(ctx context.Context, l *Log, s fileSink, log *slog.Logger) (err error) {
	out, err := openSinkFile(s.path)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, out.commit(), out.f.Close())
	}()
	opts := SubscriptionOptions{Filter: s.filter, Start: StartBeginning, Heartbeat: sinkHeartbeat}
	if out.cp.Sequence > 0 {
		opts.Start, opts.After = StartAfter, out.cp.Sequence
	}
	sw := &switchWriter{w: io.Discard}
	rw := s.exporter.NewWriter(sw)
	if out.cp.Offset > 0 {
		// The preamble is in the file already: let it go to waste.
		if err := rw.Flush(); err != nil {
			return err
		}
	}
	sw.w = out.f
	out.rw = rw
	log.InfoContext(ctx, "event export started", slog.Int64("after_sequence", out.cp.Sequence), slog.Int64("offset", out.cp.Offset))
	for ctx.Err() == nil {
		sub, err := l.Subscribe(ctx, opts)
		if err != nil {
			return err
		}
		err = sub.Run(ctx, func(_ context.Context, ev *Stored) error {
			if err := rw.Write(RecordOf(ev)); err != nil {
				return err
			}
			out.sequence, out.pending = ev.Sequence, out.pending+1
			if out.pending >= sinkCommitEvery {
				return out.commit()
			}
			return nil
		}, func(_ context.Context, scanned int64) error {
			out.sequence = max(out.sequence, scanned)
			return out.commit()
		})
		if ctx.Err() != nil {
			return nil
		}
		if fe, ok := fault.As(err); ok && fe.Reason == fault.ReasonLogTruncated {
			log.ErrorContext(ctx, "event export fell behind the retained log; events were skipped",
				slog.Int64("after_sequence", out.sequence), slog.String("oldest_sequence", fe.Metadata["oldest_sequence"]))
			opts.Start, opts.After = StartBeginning, 0
			continue
		}
		return err
	}
	return nil
}

// sinkFile is an export's file and its checkpoint.
type sinkFile struct {
	path string
	f    *os.File
	rw   RecordWriter
	cp   Checkpoint
	// sequence is the last sequence written or scanned; pending counts the
	// records written since the last checkpoint.
	sequence int64
	pending  int
}

// openSinkFile opens the file at path for appending at its checkpoint,
// cutting off what a crash left after it.
func openSinkFile(path string) (*sinkFile, error) {
	s := &sinkFile{path: path}
	raw, err := os.ReadFile(CheckpointPath(path))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &s.cp); err != nil || s.cp.Sequence < 0 || s.cp.Offset < 0 {
			return nil, fmt.Errorf("events: the checkpoint %s is unreadable (%q); move the file and its checkpoint away to export again", CheckpointPath(path), raw)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) //nolint:gosec // an operator's output path
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil && info.Size() < s.cp.Offset {
		err = fmt.Errorf("events: %s is shorter (%d bytes) than its checkpoint says (%d); move the file and its checkpoint away to export again",
			path, info.Size(), s.cp.Offset)
	}
	if err == nil {
		err = f.Truncate(s.cp.Offset)
	}
	if err == nil {
		_, err = f.Seek(s.cp.Offset, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	s.f, s.sequence = f, s.cp.Sequence
	return s, nil
}

// commit flushes, syncs the file and then stores the checkpoint, written
// to a temporary file and renamed over the old one.
func (s *sinkFile) commit() error {
	if s.rw == nil || s.sequence == s.cp.Sequence {
		return nil
	}
	if err := s.rw.Flush(); err != nil {
		return fmt.Errorf("events: writing %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("events: syncing %s: %w", s.path, err)
	}
	off, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("events: %s: %w", s.path, err)
	}
	cp := Checkpoint{Sequence: s.sequence, Offset: off}
	raw, _ := json.Marshal(cp)
	tmp := CheckpointPath(s.path) + ".tmp"
	if err := writeSynced(tmp, raw); err != nil {
		return fmt.Errorf("events: writing the checkpoint: %w", err)
	}
	if err := os.Rename(tmp, CheckpointPath(s.path)); err != nil {
		return fmt.Errorf("events: storing the checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	s.cp, s.pending = cp, 0
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path) //nolint:gosec // beside an operator's output path
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// switchWriter writes to w, which can be swapped between writes.
type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(p []byte) (int, error) { return s.w.Write(p) }
