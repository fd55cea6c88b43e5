package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/ent/steptransition"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// claimN creates n chain tasks in ns and claims their n root steps in one
// call as w1.
func claimN(ctx context.Context, t *testing.T, b *bundle, ns string, n int) []*taskerv1.ClaimedStep {
	t.Helper()
	for i := range n {
		_, err := createChain(ctx, b, ns, i)
		require.NoError(t, err)
	}
	resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
		WorkerId: "w1", Handlers: []*taskerv1.HandlerRef{{Namespace: ns, Handler: "work"}},
		MaxSteps: int32(n), Wait: durationpb.New(5 * time.Second),
	})
	require.NoError(t, err)
	require.Len(t, resp.GetSteps(), n)
	return resp.GetSteps()
}

func result(t *testing.T, v map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(v)
	require.NoError(t, err)
	return s
}

// requireEntry checks one batch entry's result against what the
// single-entry RPC answers: its code and ErrorInfo reason.
func requireEntry(t *testing.T, r *taskerv1.EntryResult, code codes.Code, reason string, why ...string) {
	t.Helper()
	require.Equal(t, code, codes.Code(r.GetCode()), "entry %v %v", r, why)
	require.Equal(t, reason, r.GetReason(), "entry %v %v", r, why)
	if code == codes.OK {
		require.Empty(t, r.GetMessage())
	} else {
		require.NotEmpty(t, r.GetMessage())
	}
}

// TestBatchCompleteSteps: a batch with good and bad entries answers each
// as CompleteStep would, in request order; the bad ones change nothing and
// never fail the good ones. A completion repeated with its lease and
// result succeeds again; with a different result it is ALREADY_COMPLETED.
func TestBatchCompleteSteps(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "bc")
		s := claimN(ctx, t, b, "bc", 3)

		resp, err := b.steps.BatchCompleteSteps(ctx, &taskerv1.BatchCompleteStepsRequest{Completions: []*taskerv1.StepCompletion{
			{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Result: result(t, map[string]any{"i": 0})},
			{StepId: s[1].GetStepId(), LeaseToken: "not-the-lease"},
			{StepId: uuid.NewString(), LeaseToken: s[0].GetLeaseToken()},
			{StepId: "not-a-uuid", LeaseToken: s[0].GetLeaseToken()},
			{StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Result: result(t, map[string]any{"i": 2})},
			{StepId: s[1].GetStepId()},
		}})
		require.NoError(t, err)
		r := resp.GetResults()
		require.Len(t, r, 6)
		requireEntry(t, r[0], codes.OK, "")
		requireEntry(t, r[1], codes.Aborted, "LEASE_LOST")
		requireEntry(t, r[2], codes.NotFound, "")
		requireEntry(t, r[3], codes.InvalidArgument, "")
		requireEntry(t, r[4], codes.OK, "")
		requireEntry(t, r[5], codes.InvalidArgument, "")

		for i, want := range map[int]taskerv1.StepState{
			0: taskerv1.StepState_STEP_STATE_COMPLETE,
			1: taskerv1.StepState_STEP_STATE_IN_PROGRESS,
			2: taskerv1.StepState_STEP_STATE_COMPLETE,
		} {
			got := getStep(ctx, t, b, s[i].GetStepId())
			require.Equal(t, want, got.GetState(), "step %d", i)
			if want == taskerv1.StepState_STEP_STATE_COMPLETE {
				require.InDelta(t, float64(i), got.GetResult().GetFields()["i"].GetNumberValue(), 0)
			}
		}

		// The step the bad entries named still completes with its lease,
		// and replays are idempotent in a batch as on their own, even
		// twice in one batch.
		resp, err = b.steps.BatchCompleteSteps(ctx, &taskerv1.BatchCompleteStepsRequest{Completions: []*taskerv1.StepCompletion{
			{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken(), Result: result(t, map[string]any{"i": 1})},
			{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Result: result(t, map[string]any{"i": 0})},
			{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Result: result(t, map[string]any{"i": 0})},
			{StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Result: result(t, map[string]any{"i": "other"})},
		}})
		require.NoError(t, err)
		r = resp.GetResults()
		requireEntry(t, r[0], codes.OK, "")
		requireEntry(t, r[1], codes.OK, "", "same lease, same result")
		requireEntry(t, r[2], codes.OK, "", "same lease, same result")
		requireEntry(t, r[3], codes.FailedPrecondition, "ALREADY_COMPLETED")
		require.Equal(t, "STEP_STATE_COMPLETE", r[3].GetMetadata()["current_state"])
		require.InDelta(t, 2.0, getStep(ctx, t, b, s[2].GetStepId()).GetResult().GetFields()["i"].GetNumberValue(), 0,
			"the first result stands")

		// Whole-request refusals.
		_, err = b.steps.BatchCompleteSteps(ctx, &taskerv1.BatchCompleteStepsRequest{})
		requireCode(t, err, codes.InvalidArgument)
		tooMany := make([]*taskerv1.StepCompletion, 101)
		for i := range tooMany {
			tooMany[i] = &taskerv1.StepCompletion{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken()}
		}
		_, err = b.steps.BatchCompleteSteps(ctx, &taskerv1.BatchCompleteStepsRequest{Completions: tooMany})
		requireCode(t, err, codes.InvalidArgument)
	})
}

// TestBatchFailSteps: a batch with good and bad entries answers each as
// FailStep would, with the outcome of each good one; repeating a failure
// with its lease and error succeeds again with the same outcome, and with
// a different error is ALREADY_COMPLETED.
func TestBatchFailSteps(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "bf")
		s := claimN(ctx, t, b, "bf", 3)
		boom := &taskerv1.StepError{Message: "boom", Type: "test"}

		resp, err := b.steps.BatchFailSteps(ctx, &taskerv1.BatchFailStepsRequest{Failures: []*taskerv1.StepFailure{
			{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Error: boom},
			{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken(), Error: boom, NonRetryable: true},
			{StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Error: &taskerv1.StepError{}},
			{StepId: s[2].GetStepId(), LeaseToken: "not-the-lease", Error: boom},
			{StepId: uuid.NewString(), LeaseToken: s[2].GetLeaseToken(), Error: boom},
			{StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Error: boom, RetryAfter: durationpb.New(-time.Second)},
		}})
		require.NoError(t, err)
		o := resp.GetOutcomes()
		require.Len(t, o, 6)
		requireEntry(t, o[0].GetResult(), codes.OK, "")
		require.Equal(t, taskerv1.StepState_STEP_STATE_WAITING_FOR_RETRY, o[0].GetState())
		require.NotNil(t, o[0].GetAvailableAt())
		requireEntry(t, o[1].GetResult(), codes.OK, "")
		require.Equal(t, taskerv1.StepState_STEP_STATE_ERROR, o[1].GetState())
		require.Nil(t, o[1].GetAvailableAt())
		requireEntry(t, o[2].GetResult(), codes.InvalidArgument, "")
		requireEntry(t, o[3].GetResult(), codes.Aborted, "LEASE_LOST")
		requireEntry(t, o[4].GetResult(), codes.NotFound, "")
		requireEntry(t, o[5].GetResult(), codes.InvalidArgument, "")
		for i := 2; i < 6; i++ {
			require.Equal(t, taskerv1.StepState_STEP_STATE_UNSPECIFIED, o[i].GetState(), "a refused entry has no outcome")
		}
		require.Equal(t, taskerv1.StepState_STEP_STATE_IN_PROGRESS, getStep(ctx, t, b, s[2].GetStepId()).GetState(),
			"the bad entries changed nothing")

		resp, err = b.steps.BatchFailSteps(ctx, &taskerv1.BatchFailStepsRequest{Failures: []*taskerv1.StepFailure{
			{StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Error: boom},
			{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Error: boom},
			{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken(), Error: boom, NonRetryable: true},
			{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken(), Error: &taskerv1.StepError{Message: "another"}},
		}})
		require.NoError(t, err)
		o2 := resp.GetOutcomes()
		requireEntry(t, o2[0].GetResult(), codes.OK, "")
		requireEntry(t, o2[1].GetResult(), codes.OK, "", "same lease, same error")
		require.Equal(t, o[0].GetState(), o2[1].GetState())
		require.True(t, o[0].GetAvailableAt().AsTime().Equal(o2[1].GetAvailableAt().AsTime()), "the same outcome")
		requireEntry(t, o2[2].GetResult(), codes.OK, "", "same lease, same error")
		require.Equal(t, taskerv1.StepState_STEP_STATE_ERROR, o2[2].GetState())
		requireEntry(t, o2[3].GetResult(), codes.FailedPrecondition, "ALREADY_COMPLETED")

		_, err = b.steps.BatchFailSteps(ctx, &taskerv1.BatchFailStepsRequest{})
		requireCode(t, err, codes.InvalidArgument)
	})
}

// TestReportReplay: CompleteStep and FailStep on their own, repeated with
// the same lease and the same result or error, succeed again without a
// second transition or event; with a different one they are
// ALREADY_COMPLETED; a report on an attempt the reaper ended is LEASE_LOST.
func TestReportReplay(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "rp")
		s := claimN(ctx, t, b, "rp", 3)
		countTransitions := func(stepID string) int {
			t.Helper()
			n, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(uuid.MustParse(stepID))).Count(ctx)
			require.NoError(t, err)
			return n
		}

		done := &taskerv1.CompleteStepRequest{StepId: s[0].GetStepId(), LeaseToken: s[0].GetLeaseToken(), Result: result(t, map[string]any{"ok": true})}
		_, err := b.steps.CompleteStep(ctx, done)
		require.NoError(t, err)
		before := countTransitions(s[0].GetStepId())
		_, err = b.steps.CompleteStep(ctx, done)
		require.NoError(t, err, "same lease, same result")
		require.Equal(t, before, countTransitions(s[0].GetStepId()), "a replay records nothing")
		done.Result = result(t, map[string]any{"ok": false})
		_, err = b.steps.CompleteStep(ctx, done)
		st := requireCode(t, err, codes.FailedPrecondition)
		require.Equal(t, "ALREADY_COMPLETED", errorInfo(st).GetReason())

		fail := &taskerv1.FailStepRequest{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken(), Error: &taskerv1.StepError{Message: "boom"}}
		first, err := b.steps.FailStep(ctx, fail)
		require.NoError(t, err)
		before = countTransitions(s[1].GetStepId())
		again, err := b.steps.FailStep(ctx, fail)
		require.NoError(t, err, "same lease, same error")
		require.Equal(t, first.GetState(), again.GetState())
		require.True(t, first.GetAvailableAt().AsTime().Equal(again.GetAvailableAt().AsTime()))
		require.Equal(t, before, countTransitions(s[1].GetStepId()), "a replay records nothing")
		fail.Error.Message = "something else"
		_, err = b.steps.FailStep(ctx, fail)
		st = requireCode(t, err, codes.FailedPrecondition)
		require.Equal(t, "ALREADY_COMPLETED", errorInfo(st).GetReason())
		// Completing an attempt its lease failed is not a replay.
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: s[1].GetStepId(), LeaseToken: s[1].GetLeaseToken()})
		st = requireCode(t, err, codes.Aborted)
		require.Equal(t, "LEASE_LOST", errorInfo(st).GetReason())

		// The reaper ended this attempt: the worker's late failure lost
		// its lease, whatever it says.
		require.NoError(t, db.Client.Step.UpdateOneID(uuid.MustParse(s[2].GetStepId())).
			SetLeaseExpiresAt(time.Now().Add(-time.Second)).Exec(ctx))
		reap(ctx, t, db, b.engine, s[2].GetStepId())
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: s[2].GetStepId(), LeaseToken: s[2].GetLeaseToken(), Error: &taskerv1.StepError{Message: "late"},
		})
		st = requireCode(t, err, codes.Aborted)
		require.Equal(t, "LEASE_LOST", errorInfo(st).GetReason())
	})
}
