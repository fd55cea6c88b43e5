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

func eventsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Read the event log of a running server: export a slice, or follow it live"}
	cmd.AddCommand(eventsExportCommand(), eventsTailCommand())
	return cmd
}

type exportFlags struct {
	filter        eventFilterFlags
	format        string
	output        string
	after, until  int64
	addr          string
	conn          connFlags
	pageSize      int32
	forceProgress bool
}

func eventsExportCommand() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the event log, or a slice of it, as JSON lines or CSV",
		Long: "Write the event log, or a slice of it, as JSON lines (one object per event) or CSV (a header row, the payload as\n" +
			"a JSON column), streaming it page by page through ListEvents. The slice ends at --until, or at the newest event\n" +
			"when the export starts. Progress goes to stderr when it is a terminal.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return export(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.filter.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", events.FormatJSON, "json (JSON lines) or csv")
	fl.StringVarP(&f.output, "output", "o", "", "write to this file (replaced once the export is complete) instead of stdout")
	fl.Int64Var(&f.after, "after", 0, "only events after this sequence")
	fl.Int64Var(&f.until, "until", 0, "only events up to this sequence, inclusive; 0 for the newest at the start")
	fl.StringVar(&f.addr, "addr", env("TASKER_ADDR", "127.0.0.1:50051"), "server address [TASKER_ADDR]")
	f.conn.register(cmd)
	fl.Int32Var(&f.pageSize, "page-size", 1000, "events per ListEvents call")
	fl.BoolVar(&f.forceProgress, "progress", false, "show progress on stderr even when it is not a terminal")
	_ = fl.MarkHidden("page-size")
	return cmd
}

func export(ctx context.Context, f exportFlags, stdout, stderr io.Writer) (err error) {
	exporter, ok := events.NewRegistry(slog.New(slog.DiscardHandler)).Exporter(f.format)
	if !ok {
		return fmt.Errorf("--format: want json or csv, got %q", f.format)
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
	n, err := exportPages(ctx, client, f, w, prog)
	prog.done(n, err)
	if err != nil {
		return err
	}
	return w.Flush()
}

// exportPages pages through the slice with after_sequence = the last
// scanned sequence (rather than page tokens), which is how a reader
// resumes anyway, and pins the end of an open slice at the first page's
// head so a busy log cannot keep the export running.
func exportPages(ctx context.Context, client taskerv1.EventServiceClient, f exportFlags, w events.RecordWriter, prog *progress) (int64, error) {
	after, until := f.after, f.until
	var n int64
	for {
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
		if until == 0 {
			until = resp.GetHeadSequence()
		}
		after = resp.GetScannedSequence()
		prog.update(n, f.after, after, until)
		if until == 0 || after >= until {
			return n, nil
		}
	}
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
	backoff := minTailBackoff
	for {
		resumed, err := tailOnce(ctx, client, req, w)
		if resumed {
			backoff = minTailBackoff
		}
		switch {
		case err == nil:
			return nil // the task finished
		case ctx.Err() != nil:
			return nil // interrupted: a normal way to stop tailing
		case !retryable(err):
			return describeEventErr(err)
		}
		fmt.Fprintf(stderr, "tasker: stream broke (%v); resuming after sequence %d in %s\n",
			status.Convert(err).Message(), req.GetAfterSequence(), backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxTailBackoff)
	}
}

// tailOnce follows one stream until it ends, moving req on to resume
// after everything it has seen: the start position, each event, each
// heartbeat. It reports whether the stream got started (to reset the
// backoff) and how it ended: nil for an OK end (until_task_finished).
func tailOnce(ctx context.Context, client taskerv1.EventServiceClient, req *taskerv1.SubscribeRequest, w events.RecordWriter) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Subscribe(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	started := false
	resume := func(seq int64) {
		req.Start, req.AfterSequence = taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, seq
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
			resume(m.Started.GetStartAfterSequence())
		case *taskerv1.SubscribeResponse_Event:
			if err := w.Write(recordOfProto(m.Event)); err != nil {
				return started, err
			}
			if err := w.Flush(); err != nil {
				return started, err
			}
			resume(m.Event.GetSequence())
		case *taskerv1.SubscribeResponse_Heartbeat:
			resume(max(req.GetAfterSequence(), m.Heartbeat.GetScannedSequence()))
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
