package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/auth"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// scrape reads /metrics with the bearer token secret ("" for none) and
// returns the status and, on 200, the parsed families.
func scrape(ctx context.Context, t *testing.T, addr, secret string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, fams
}

// sample returns the value of the family's sample whose labels include
// labels (kv pairs): a counter's or gauge's value, a histogram's count.
// A sample that is absent is 0.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	total, _ := samples(t, fams, name, labels...)
	return total
}

// series is the value of the series of name with labels, which must be
// there: a gauge reporting 0 is not a gauge gone missing.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	total, found := samples(t, fams, name, labels...)
	require.Equal(t, 1, found, "one %s series with %v", name, labels)
	return total
}

// samples sums the series of name that have labels, and counts them.
func samples(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, int) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, 0
	}
	var total float64
	found := 0
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		found++
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			total += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			total += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			total += float64(m.GetHistogram().GetSampleCount())
		default:
			t.Fatalf("%s: unexpected type %s", name, f.GetType())
		}
	}
	return total, found
}

func TestMetricsAfterDiamond(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		// Gauges read from the database are read again at every scrape.
		b := serve(t, db, servertest.Options{Admin: true, Config: server.Config{StatsInterval: time.Nanosecond}})
		ctx := testContext(t)
		_, before := scrape(ctx, t, b.adminAddr, "")

		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		create := &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), IdempotencyKey: "order-1"}
		_, err = b.tasks.CreateTask(ctx, create)
		require.NoError(t, err)
		_, created := scrape(ctx, t, b.adminAddr, "")
		require.Equal(t, 1, int(sample(t, created, "tasker_queue_depth", "namespace", "shop", "handler", "work", "state", "enqueued")))
		require.Equal(t, 0, int(sample(t, created, "tasker_queue_depth", "state", "in_progress")))
		require.Equal(t, 1, int(sample(t, created, "tasker_registry_templates", "namespace", "shop")))
		require.Equal(t, 1, int(sample(t, created, "tasker_registry_template_versions", "namespace", "shop")))
		require.Equal(t, 2, int(sample(t, created, "tasker_handlers_without_workers", "namespace", "shop")),
			"no worker serves work or other yet")
		again, err := b.tasks.CreateTask(ctx, create)
		require.NoError(t, err)
		require.True(t, again.GetDuplicate())

		result, err := structpb.NewStruct(map[string]any{"ok": true})
		require.NoError(t, err)
		claim := func(handler string) *taskerv1.ClaimedStep {
			t.Helper()
			resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
				WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: handler}}, MaxSteps: 1,
			})
			require.NoError(t, err)
			require.Len(t, resp.GetSteps(), 1)
			return resp.GetSteps()[0]
		}
		complete := func(s *taskerv1.ClaimedStep) {
			t.Helper()
			_, err := b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken(), Result: result})
			require.NoError(t, err)
		}
		a := claim("work")
		_, claimed := scrape(ctx, t, b.adminAddr, "")
		require.Equal(t, 0, int(sample(t, claimed, "tasker_queue_depth", "namespace", "shop", "handler", "work", "state", "enqueued")))
		require.Equal(t, 1, int(sample(t, claimed, "tasker_queue_depth", "namespace", "shop", "handler", "work", "state", "in_progress")))
		require.Equal(t, 1, int(sample(t, claimed, "tasker_handler_workers", "namespace", "shop", "handler", "work")))
		require.Equal(t, 1, int(sample(t, claimed, "tasker_handlers_without_workers", "namespace", "shop")))
		complete(a)
		bStep := claim("work")
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{StepId: bStep.GetStepId(), LeaseToken: bStep.GetLeaseToken(),
			Error: &taskerv1.StepError{Message: "try again"}})
		require.NoError(t, err)
		complete(claim("work"))  // b, second attempt: no backoff
		complete(claim("other")) // c
		complete(claim("work"))  // d
		got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: again.GetTask().GetId()})
		require.NoError(t, err)
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, got.GetTask().GetState())

		status, after := scrape(ctx, t, b.adminAddr, "")
		require.Equal(t, http.StatusOK, status)
		delta := func(name string, labels ...string) float64 {
			return sample(t, after, name, labels...) - sample(t, before, name, labels...)
		}
		work := []string{"namespace", "shop", "handler", "work"}
		other := []string{"namespace", "shop", "handler", "other"}
		shop := []string{"namespace", "shop"}
		for _, c := range []struct {
			name   string
			labels []string
			want   int
		}{
			{"tasker_steps_claimed_total", work, 4},
			{"tasker_steps_claimed_total", other, 1},
			{"tasker_steps_completed_total", work, 3},
			{"tasker_steps_completed_total", other, 1},
			{"tasker_steps_failed_total", append([]string{"retryable", "true"}, work...), 1},
			{"tasker_steps_failed_total", []string{"retryable", "false"}, 0},
			{"tasker_steps_retried_total", work, 1},
			{"tasker_steps_timed_out_total", nil, 0},
			{"tasker_steps_lease_expired_total", nil, 0},
			{"tasker_tasks_created_total", shop, 1},
			{"tasker_tasks_duplicated_total", shop, 1},
			{"tasker_tasks_completed_total", shop, 1},
			{"tasker_tasks_failed_total", nil, 0},
			{"tasker_tasks_cancelled_total", nil, 0},
			{"tasker_step_claim_latency_seconds", work, 4},
			{"tasker_step_claim_latency_seconds", other, 1},
			{"tasker_step_run_time_seconds", work, 4},
			{"tasker_step_run_time_seconds", other, 1},
			{"tasker_task_duration_seconds", shop, 1},
		} {
			// Counts are whole numbers, exact in a float64.
			require.Equal(t, c.want, int(delta(c.name, c.labels...)), "%s %v", c.name, c.labels)
		}
		for name, f := range after {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					require.NotContains(t, []string{"task_id", "step_id", "worker_id"}, l.GetName(), name)
				}
			}
		}
		require.Positive(t, sample(t, after, "tasker_event_log_head_sequence"))
		require.Contains(t, after, "tasker_subscriptions_active")
		require.Contains(t, after, "tasker_subscription_max_lag")
		require.Contains(t, after, "tasker_event_sequencer_lag")
		require.Zero(t, sample(t, after, "tasker_queue_depth"), "the queue is empty and says so")
		require.Zero(t, series(t, after, "tasker_queue_depth", "namespace", "shop", "handler", "work", "state", "enqueued"),
			"an emptied queue reports 0, not nothing")
		require.Positive(t, sample(t, after, "tasker_db_connections_max"))
		require.Contains(t, after, "tasker_db_connections")
		if db.Dialect == dialect.SQLite {
			require.Positive(t, delta("tasker_db_group_commits_total"))
			require.GreaterOrEqual(t, delta("tasker_db_group_commit_transactions_total"), delta("tasker_db_group_commits_total"))
		} else {
			require.Zero(t, sample(t, after, "tasker_db_group_commits_total"))
		}
		require.Positive(t, sample(t, after, "rpc_server_call_duration_seconds", "rpc_method", "tasker.v1.StepService/ClaimSteps"),
			"otelgrpc's RPC metrics are served too")
	})
}

func TestMetricsNeedScopeWithAuth(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		log := slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		store := auth.NewStore(db)
		srv := servertest.Start(t, db, servertest.Options{Logger: log, Admin: true, Config: server.Config{
			Authenticator: auth.NewAuthenticator(store, log, auth.AuthenticatorOptions{}),
		}})
		ctx := testContext(t)
		token := func(scopes ...auth.Scope) string {
			secret, _, err := store.Create(ctx, auth.CreateParams{Name: strings.ReplaceAll(string(scopes[0]), ":", "-"), Scopes: scopes, Namespaces: []string{auth.AllNamespaces}})
			require.NoError(t, err)
			return secret
		}
		status, _ := scrape(ctx, t, srv.AdminAddr, "")
		require.Equal(t, http.StatusUnauthorized, status)
		status, _ = scrape(ctx, t, srv.AdminAddr, "tsk_not-a-token")
		require.Equal(t, http.StatusUnauthorized, status)
		status, _ = scrape(ctx, t, srv.AdminAddr, token(auth.TasksRead, auth.EventsRead))
		require.Equal(t, http.StatusForbidden, status)
		status, fams := scrape(ctx, t, srv.AdminAddr, token(auth.MetricsRead))
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, fams, "tasker_event_log_head_sequence")
		status, _ = scrape(ctx, t, srv.AdminAddr, token(auth.Admin))
		require.Equal(t, http.StatusOK, status)
	})
}
