package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/backoff"
	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// eventFilterFlags are the filters export and tail share.
type eventFilterFlags struct {
	namespace, template, task, correlationID string
	types                                    []string
}

func (f *eventFilterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.namespace, "namespace", "", "only events of this namespace")
	fl.StringVar(&f.template, "template", "", "only events of this template name")
	fl.StringVar(&f.task, "task", "", "only events of this task id")
	fl.StringVar(&f.correlationID, "correlation-id", "", "only events with this correlation id")
	fl.StringArrayVar(&f.types, "type", nil, "only types matching this pattern (\"step.completed\", \"step.*\", \"*\"); repeat for several")
}

func (f *eventFilterFlags) proto() *taskerv1.EventFilter {
	return &taskerv1.EventFilter{
		Namespace: f.namespace, TemplateName: f.template, TaskId: f.task,
		CorrelationId: f.correlationID, Types: f.types,
	}
}

func eventsCommand(exporters *events.Registry) *cobra.Command {
	cmd := &cobra.Command{Use: "events", Aliases: []string{"event"}, Short: "Read the event log of a running server: export a slice, follow it live, list the event types"}
	cmd.AddCommand(eventsExportCommand(exporters), eventsTailCommand(), eventTypesCommand())
	return cmd
}

type exportFlags struct {
	// exporters holds the formats; nil means the built-in ones.
	exporters     *events.Registry
	filter        eventFilterFlags
	format        string
	output        string
	after, until  int64
	addr          string
	conn          connFlags
	pageSize      int32
	forceProgress bool
	follow        bool
	// following, when set, is called as the export starts waiting on the
	// server for new events (tests synchronise on it).
	following func()
}

func eventsExportCommand(exporters *events.Registry) *cobra.Command {
	f := exportFlags{exporters: exporters}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the event log, or a slice of it, as JSON lines or CSV",
		Long: "Write the event log, or a slice of it, as JSON lines (one object per event) or CSV (a header row, the payload as\n" +
			"a JSON column), streaming it page by page through ListEvents. The slice ends at --until or at the newest event\n" +
			"when the export starts, whichever comes first. With --follow it ends at --until however far off that is, waiting\n" +
			"on the server (Subscribe) for events not yet written; without --until it follows the log until interrupted,\n" +
			"which ends the export normally. Progress goes to stderr when it is a terminal.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return export(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.filter.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", events.FormatJSON, "json (JSON lines) or csv")
	fl.StringVarP(&f.output, "file", "f", "", "write to this file (replaced once the export is complete) instead of stdout")
	fl.Int64Var(&f.after, "after", 0, "only events after this sequence")
	fl.Int64Var(&f.until, "until", 0, "only events up to this sequence, inclusive; 0 for the newest at the start (with --follow: no end)")
	fl.BoolVar(&f.follow, "follow", false, "once past the newest event, follow the log live up to --until (or until interrupted)")
	fl.StringVar(&f.addr, "addr", env("TASKER_ADDR", "127.0.0.1:50051"), "server address [TASKER_ADDR]")
	f.conn.register(cmd)
	fl.Int32Var(&f.pageSize, "page-size", 1000, "events per ListEvents call")
	fl.BoolVar(&f.forceProgress, "progress", false, "show progress on stderr even when it is not a terminal")
	_ = fl.MarkHidden("page-size")
	return cmd
}

func export(ctx context.Context, f exportFlags, stdout, stderr io.Writer) (err error) {
	reg := f.exporters
	if reg == nil {
		reg = events.NewRegistry(slog.New(slog.DiscardHandler))
	}
	exporter, ok := reg.Exporter(f.format)
	if !ok {
		return fmt.Errorf("--format: want one of %s, got %q", strings.Join(reg.Formats(), ", "), f.format)
	}
	if f.after < 0 || f.until < 0 || (f.until > 0 && f.until < f.after) {
		return errors.New("--after and --until must be 0 or more, and --until at least --after")
	}
	conn, err := dial(f.addr, f.conn)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := taskerv1.NewEventServiceClient(conn)

	out := stdout
	if f.output != "" {
		// Written beside the target and renamed at the end, so a failed
		// export never leaves a truncated file under the name asked for.
		tmp, err := os.CreateTemp(filepath.Dir(f.output), "."+filepath.Base(f.output)+".*")
		if err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		defer func() {
			if cerr := tmp.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("--output: %w", cerr)
			}
			if err == nil {
				err = os.Rename(tmp.Name(), f.output)
			}
			if err != nil {
				_ = os.Remove(tmp.Name())
			}
		}()
		out = tmp
	}
	var prog *progress
	if f.forceProgress || isTerminal(stderr) {
		prog = &progress{w: stderr}
	}
	w := exporter.NewWriter(out)
	n, err := exportPages(ctx, client, f, w, prog, stderr)
	prog.done(n, err)
	if err != nil {
		return err
	}
	return w.Flush()
}

// exportPages pages through the slice with after_sequence = the last
// scanned sequence (rather than page tokens), which is how a reader
// resumes anyway. Without --follow it pins the end of the slice at the
// first page's head when --until is 0 or beyond it, so a busy log cannot
// keep the export running and a bound past the log cannot make it spin.
// With --follow, once it has caught up with the head it waits on the
// server through Subscribe for what comes next.
func exportPages(ctx context.Context, client taskerv1.EventServiceClient, f exportFlags, w events.RecordWriter,
	prog *progress, stderr io.Writer,
) (int64, error) {
	after, until := f.after, f.until
	var n int64
	for first := true; ; first = false {
		resp, err := client.ListEvents(ctx, &taskerv1.ListEventsRequest{
			Filter: f.filter.proto(), AfterSequence: after, UntilSequence: until, PageSize: f.pageSize,
		})
		if err != nil {
			return n, describeEventErr(err)
		}
		for _, ev := range resp.GetEvents() {
			if err := w.Write(recordOfProto(ev)); err != nil {
				return n, err
			}
			n++
		}
		head := resp.GetHeadSequence()
		if first && !f.follow && (until == 0 || until > head) {
			until = head
		}
		after = max(after, resp.GetScannedSequence())
		prog.update(n, f.after, after, until)
		switch {
		case until > 0 && after >= until:
			return n, nil
		case !f.follow && until == 0:
			return n, nil // an empty log
		case f.follow && after >= head:
			m, err := exportFollow(ctx, client, f, w, prog, stderr, after, until, n)
			return n + m, err
		}
	}
}

// followHeartbeat is how often a following export hears how far the
// server has scanned, so it ends at --until even when the last events
// before it do not match the filter.
const followHeartbeat = time.Second

// exportFollow writes the events after the sequence after, as they are
// committed, up to until (0: until ctx ends, which is a normal end).
func exportFollow(ctx context.Context, client taskerv1.EventServiceClient, f exportFlags, w events.RecordWriter,
	prog *progress, stderr io.Writer, after, until, written int64,
) (int64, error) {
	if f.following != nil {
		f.following()
	}
	var n int64
	req := &taskerv1.SubscribeRequest{
		Filter: f.filter.proto(), Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: after,
		HeartbeatInterval: durationpb.New(followHeartbeat),
	}
	err := followLog(ctx, client, req, w, until, stderr, func(scanned int64, wrote bool) {
		if wrote {
			n++
		}
		prog.update(written+n, f.after, scanned, until)
	})
	if err != nil && ctx.Err() != nil && until == 0 {
		err = nil // following an open-ended log ends by interruption
	}
	return n, err
}

type tailFlags struct {
	filter        eventFilterFlags
	after         int64
	fromBeginning bool
	untilFinished bool
	heartbeat     time.Duration
	addr          string
	conn          connFlags
}

func eventsTailCommand() *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the event log live, printing JSON lines",
		Long: "Follow the event log through Subscribe and print each matching event as a JSON line (the export format).\n" +
			"When the stream breaks (a restart, a network failure, a replica going away) it reconnects with backoff and\n" +
			"resumes after the last sequence it scanned, so no event is lost or printed twice.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return tail(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.filter.register(cmd)
	fl := cmd.Flags()
	fl.Int64Var(&f.after, "after", 0, "start after this sequence (default: only new events)")
	fl.BoolVar(&f.fromBeginning, "from-beginning", false, "start with the oldest retained event")
	fl.BoolVar(&f.untilFinished, "until-finished", false, "stop once the --task has finished and its events are printed")
	fl.DurationVar(&f.heartbeat, "heartbeat", 15*time.Second, "how often the server reports progress (100ms to 5m)")
	fl.StringVar(&f.addr, "addr", env("TASKER_ADDR", "127.0.0.1:50051"), "server address [TASKER_ADDR]")
	f.conn.register(cmd)
	cmd.MarkFlagsMutuallyExclusive("after", "from-beginning")
	return cmd
}

// Reconnection backoff of tail.
const (
	minTailBackoff = 100 * time.Millisecond
	maxTailBackoff = 5 * time.Second
)

func tail(ctx context.Context, f tailFlags, stdout, stderr io.Writer) error {
	conn, err := dial(f.addr, f.conn)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := taskerv1.NewEventServiceClient(conn)
	w := events.JSONLines{}.NewWriter(stdout)

	req := &taskerv1.SubscribeRequest{
		Filter:            f.filter.proto(),
		UntilTaskFinished: f.untilFinished,
		HeartbeatInterval: durationpb.New(f.heartbeat),
	}
	switch {
	case f.fromBeginning:
		req.Start = taskerv1.StartPosition_START_POSITION_BEGINNING
	case f.after > 0:
		req.Start, req.AfterSequence = taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, f.after
	default:
		req.Start = taskerv1.StartPosition_START_POSITION_NOW
	}
	if err := followLog(ctx, client, req, w, 0, stderr, nil); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // the task finished, or interrupted: a normal way to stop tailing
}

// followLog follows req through Subscribe, writing and flushing every event.
// When the stream breaks (a restart, a network failure, a replica going
// away) it reconnects with backoff, telling stderr, and resumes after the
// last sequence scanned, so no event is lost or written twice. It returns
// nil when the stream ends (until_task_finished) or has scanned up to until
// (0 for no bound); ctx's error when ctx ends; otherwise the stream's
// error once it is not worth reconnecting for. seen, when set, hears the
// scanned sequence after every event (wrote) and heartbeat.
func followLog(ctx context.Context, client taskerv1.EventServiceClient, req *taskerv1.SubscribeRequest, w events.RecordWriter,
	until int64, stderr io.Writer, seen func(scanned int64, wrote bool),
) error {
	wait := backoff.New(minTailBackoff, maxTailBackoff)
	for {
		resumed, err := tailOnce(ctx, client, req, w, until, seen)
		if resumed {
			wait.Reset()
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !retryable(err):
			return describeEventErr(err)
		}
		pause := wait.Next()
		fmt.Fprintf(stderr, "tasker: stream broke (%v); resuming after sequence %d in %s\n",
			status.Convert(err).Message(), req.GetAfterSequence(), pause.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// tailOnce follows one stream until it ends or has scanned up to until (0
// for no bound), moving req on to resume after everything it has seen: the
// start position, each event, each heartbeat. It reports whether the
// stream got started (to reset the backoff) and how it ended: nil for an
// OK end (until_task_finished, or until reached).
func tailOnce(ctx context.Context, client taskerv1.EventServiceClient, req *taskerv1.SubscribeRequest, w events.RecordWriter,
	until int64, seen func(scanned int64, wrote bool),
) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Subscribe(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	started := false
	resume := func(seq int64, wrote bool) {
		req.Start, req.AfterSequence = taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, seq
		if seen != nil {
			seen(seq, wrote)
		}
	}
	reached := func() bool { return until > 0 && req.GetAfterSequence() >= until }
	if reached() {
		return false, nil
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return started, nil
		}
		if err != nil {
			return started, err
		}
		switch m := msg.GetMessage().(type) {
		case *taskerv1.SubscribeResponse_Started:
			started = true
			req.Start, req.AfterSequence = taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, m.Started.GetStartAfterSequence()
		case *taskerv1.SubscribeResponse_Event:
			if until > 0 && m.Event.GetSequence() > until {
				return started, nil
			}
			if err := w.Write(recordOfProto(m.Event)); err != nil {
				return started, err
			}
			if err := w.Flush(); err != nil {
				return started, err
			}
			resume(m.Event.GetSequence(), true)
		case *taskerv1.SubscribeResponse_Heartbeat:
			resume(max(req.GetAfterSequence(), m.Heartbeat.GetScannedSequence()), false)
		}
		if reached() {
			return started, nil
		}
	}
}

// retryable reports stream errors worth reconnecting for; the others are
// the request's fault and would fail again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.OutOfRange, codes.PermissionDenied,
		codes.Unauthenticated, codes.Unimplemented, codes.FailedPrecondition:
		return false
	}
	return true
}

// describeEventErr adds what to do about a truncated log.
func describeEventErr(err error) error {
	st := status.Convert(err)
	if st.Code() != codes.OutOfRange {
		return err
	}
	return fmt.Errorf("%s (retention has removed those events; start at or after the oldest retained sequence)", st.Message())
}

// recordOfProto returns the export record of an event from the API.
func recordOfProto(ev *taskerv1.Event) events.Record {
	payload := []byte("{}")
	if ev.GetPayload() != nil {
		if raw, err := json.Marshal(ev.GetPayload().AsMap()); err == nil {
			payload = raw
		}
	}
	return events.Record{
		Sequence: ev.GetSequence(), Type: ev.GetType(), CorrelationID: ev.GetCorrelationId(),
		Namespace: ev.GetNamespace(), TemplateName: ev.GetTemplateName(), TemplateVersion: ev.GetTemplateVersion(),
		TaskID: ev.GetTaskId(), StepID: ev.GetStepId(),
		Payload: events.CanonicalJSON(payload), Time: ev.GetTime().AsTime(),
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress draws one line on stderr, redrawn in place: the events written
// and how far through the slice the export has scanned. A nil progress
// draws nothing.
type progress struct {
	w    io.Writer
	last time.Time
}

func (p *progress) update(n, start, scanned, until int64) {
	if p == nil || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("exported %d events, scanned to sequence %d", n, scanned)
	if until > start {
		pct := 100 * float64(scanned-start) / float64(until-start)
		const width = 30
		filled := min(int(pct/100*width), width)
		line = fmt.Sprintf("[%s%s] %5.1f%% %s of %d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), pct, line, until)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

func (p *progress) done(n int64, err error) {
	if p == nil {
		return
	}
	if err != nil {
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "\r\033[Kexported %d events\n", n)
}
