package server_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestCallLogLines: a call's summary line carries the task or step it
// names; a caller's mistake logs at INFO with its code; at DEBUG each
// request is summarised first, without token values.
func TestCallLogLines(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		var logs lockedBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := serve(t, db, servertest.Options{Logger: logger})
		ctx := metadata.AppendToOutgoingContext(testContext(t), "x-correlation-id", "log-1")

		taskID, stepID := uuid.NewString(), uuid.NewString()
		_, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: taskID})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: stepID, LeaseToken: "secret-lease"})
		require.Error(t, err)

		lines := func() []map[string]any {
			var out []map[string]any
			for raw := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(raw), &rec) == nil {
					out = append(out, rec)
				}
			}
			return out
		}
		find := func(method, msg string) map[string]any {
			for _, rec := range lines() {
				if rec["grpc.method"] == method && rec["msg"] == msg {
					return rec
				}
			}
			return nil
		}
		// The summary line is written as the call ends, which may be a
		// moment after the client has its answer.
		require.Eventually(t, func() bool {
			return find("GetTask", "finished call") != nil && find("CompleteStep", "finished call") != nil
		}, 10*time.Second, 10*time.Millisecond)
		get := find("GetTask", "finished call")
		require.Equal(t, "INFO", get["level"], "a caller's mistake is not the server's error")
		require.Equal(t, "NotFound", get["grpc.code"])
		require.Equal(t, taskID, get["task_id"])
		require.Equal(t, "log-1", get["correlation_id"])
		complete := find("CompleteStep", "finished call")
		require.Equal(t, "INFO", complete["level"])
		require.Equal(t, stepID, complete["step_id"])

		var req map[string]any
		for _, rec := range lines() {
			if rec["msg"] == "request" && rec["grpc.method"] == "/tasker.v1.StepService/CompleteStep" {
				req = rec
			}
		}
		require.NotNil(t, req, "debug summarises the request")
		require.Equal(t, stepID, req["step_id"])
		require.NotContains(t, logs.String(), "secret-lease", "token values never reach the log")
		summary, ok := req["request"].(map[string]any)
		require.True(t, ok)
		require.Equal(t, stepID, summary["step_id"])
		require.Equal(t, "(redacted)", summary["lease_token"])
	})
}
