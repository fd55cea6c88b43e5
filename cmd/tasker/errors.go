package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerhq/tasker/bench"
	"github.com/taskerhq/tasker/fault"
)

// Exit codes of the tasker command, documented in the root command's help
// and the README, so scripts can tell a mistake in the command line from a
// missing resource and from everything else.
const (
	exitError    = 1 // the server refused or failed the call, or anything else
	exitUsage    = 2 // bad flags, arguments or local input: nothing was sent
	exitNotFound = 3 // the task, step, template... does not exist
)

const exitCodesHelp = `Exit codes: 0 success; 1 the server refused or failed the call (or any other error);
2 usage error (bad flags, arguments or local input: nothing was sent); 3 not found.
Errors name the gRPC code, the message, each field at fault and the correlation id.`

// usageError is a mistake in the command line or in local input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// correlatedError is a failed call with the correlation id it was sent
// with, which finds it in the server's logs and traces.
type correlatedError struct {
	err error
	id  string
}

func (e correlatedError) Error() string { return e.err.Error() }
func (e correlatedError) Unwrap() error { return e.err }

func withCorrelation(err error, id string) error {
	if _, ok := status.FromError(err); !ok {
		return err
	}
	if _, ok := errorsAs[usageError](err); ok {
		return err
	}
	return correlatedError{err: err, id: id}
}

// markUsage makes every argument and flag error of cmd and its children a
// usageError.
func markUsage(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		markUsage(c)
	}
}

// exitCode is the process's exit status for err.
func exitCode(err error) int {
	if _, ok := errorsAs[usageError](err); ok {
		return exitUsage
	}
	if _, ok := errorsAs[bench.UsageError](err); ok {
		return exitUsage
	}
	// Cobra's own parse errors (an unknown command) are not wrapped.
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		return exitUsage
	}
	if fe, ok := fault.As(err); ok && fe.Code == fault.NotFound {
		return exitNotFound
	}
	if st, ok := grpcStatus(err); ok && st.Code() == codes.NotFound {
		return exitNotFound
	}
	return exitError
}

// grpcStatus finds a gRPC status in err's chain.
func grpcStatus(err error) (*status.Status, bool) {
	type grpcErr interface{ GRPCStatus() *status.Status }
	var ge grpcErr
	if errors.As(err, &ge) {
		return ge.GRPCStatus(), true
	}
	return nil, false
}

// printError writes err in the one style every command shares:
//
//	tasker: NotFound: task "…" not found
//	  field template.steps[0].name: must match …
//	  reason: INVALID_STATE (current_state=TASK_STATE_COMPLETE)
//	  correlation id: 5b0c…
func printError(w io.Writer, err error) {
	var b strings.Builder
	if st, ok := grpcStatus(err); ok {
		prefix := strings.TrimSuffix(err.Error(), st.Err().Error())
		fmt.Fprintf(&b, "tasker: %s%s: %s\n", prefix, st.Code(), st.Message())
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.BadRequest:
				for _, v := range d.GetFieldViolations() {
					fmt.Fprintf(&b, "  field %s: %s\n", v.GetField(), v.GetDescription())
				}
			case *errdetails.ErrorInfo:
				fmt.Fprintf(&b, "  reason: %s%s\n", d.GetReason(), pairs(d.GetMetadata()))
			}
		}
	} else if fe, ok := fault.As(err); ok {
		prefix := strings.TrimSuffix(err.Error(), fe.Error())
		fmt.Fprintf(&b, "tasker: %s%s: %s\n", prefix, grpcCodeName(fe.Code), fe.Message)
		for _, v := range fe.Violations {
			fmt.Fprintf(&b, "  field %s: %s\n", v.Field, v.Description)
		}
	} else {
		fmt.Fprintf(&b, "tasker: %v\n", err)
	}
	if ce, ok := errorsAs[correlatedError](err); ok {
		fmt.Fprintf(&b, "  correlation id: %s\n", ce.id)
	}
	_, _ = io.WriteString(w, b.String())
}

// pairs formats ErrorInfo metadata in a stable order.
func pairs(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + md[k]
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// grpcCodeName is the gRPC code a fault code maps to, so local and remote
// errors read alike.
func grpcCodeName(c fault.Code) string {
	return strings.ReplaceAll(cases(c.String()), " ", "")
}

// cases title-cases each word: "invalid argument" is "Invalid Argument".
func cases(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}
