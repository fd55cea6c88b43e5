package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// contractMethods returns every RPC of the tasker.v1 services as
// "/service/method", read from the descriptors the server registers.
func contractMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	for _, fd := range []protoreflect.FileDescriptor{
		taskerv1.File_tasker_v1_registry_proto, taskerv1.File_tasker_v1_task_proto,
		taskerv1.File_tasker_v1_step_proto, taskerv1.File_tasker_v1_event_proto,
	} {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				out[fmt.Sprintf("/%s/%s", svc.FullName(), m.Name())] = m
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestAuthorizationRulesCoverContract fails when an RPC is added without
// a rule, or a rule names an RPC that no longer exists.
func TestAuthorizationRulesCoverContract(t *testing.T) {
	t.Parallel()
	methods := contractMethods(t)
	rules := server.RuleScopes()
	for m := range methods {
		scope, ok := rules[m]
		require.True(t, ok, "%s has no authorization rule (server/authz.go)", m)
		require.True(t, slices.Contains(auth.Scopes, auth.Scope(scope)), "%s: unknown scope %q", m, scope)
	}
	for m := range rules {
		require.Contains(t, methods, m, "rule for %s, which is not in the contract", m)
	}
}

// authFixture is a server requiring tokens, with a task of namespace shop
// whose first step is claimed.
type authFixture struct {
	addr   string
	store  *auth.Store
	taskID string
	stepID string
	lease  string
}

func startAuthServer(t *testing.T, db *storage.DB, ttl time.Duration) (*authFixture, *grpc.ClientConn) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store := auth.NewStore(db)
	srv := servertest.Start(t, db, servertest.Options{Logger: log, Config: server.Config{
		Authenticator: auth.NewAuthenticator(store, log, auth.AuthenticatorOptions{TTL: ttl}),
	}})
	f := &authFixture{addr: srv.Addr, store: store}
	admin := f.conn(t, f.token(t, "fixture-admin", []auth.Scope{auth.Admin}, auth.AllNamespaces))
	return f, admin
}

// token creates a token and returns its secret.
func (f *authFixture) token(t *testing.T, name string, scopes []auth.Scope, namespaces ...string) string {
	t.Helper()
	secret, _, err := f.store.Create(context.Background(), auth.CreateParams{Name: name, Scopes: scopes, Namespaces: namespaces})
	require.NoError(t, err)
	return secret
}

// conn dials the server with secret ("" for none) through the SDK's
// credentials.
func (f *authFixture) conn(t *testing.T, secret string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if secret != "" {
		opts = append(opts, worker.WithToken(secret))
	}
	conn, err := grpc.NewClient(f.addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (f *authFixture) seed(t *testing.T, admin *grpc.ClientConn) {
	t.Helper()
	ctx := testContext(t)
	_, err := taskerv1.NewRegistryServiceClient(admin).RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
	require.NoError(t, err)
	created, err := taskerv1.NewTaskServiceClient(admin).CreateTask(ctx, &taskerv1.CreateTaskRequest{
		Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"),
	})
	require.NoError(t, err)
	f.taskID = created.GetTask().GetId()
	claimed, err := taskerv1.NewStepServiceClient(admin).ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
		WorkerId: "fixture", MaxSteps: 1, Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}},
	})
	require.NoError(t, err)
	require.Len(t, claimed.GetSteps(), 1)
	f.stepID, f.lease = claimed.GetSteps()[0].GetStepId(), claimed.GetSteps()[0].GetLeaseToken()
}

// call invokes method with req on conn and returns its error; for the
// server stream it is the error of the first message.
func call(ctx context.Context, t *testing.T, conn *grpc.ClientConn, md protoreflect.MethodDescriptor, method string, req proto.Message) error {
	t.Helper()
	if md.IsStreamingServer() {
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
		if err != nil {
			return err
		}
		if err := stream.SendMsg(req); err != nil {
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		respType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		require.NoError(t, err)
		err = stream.RecvMsg(respType.New().Interface())
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	respType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	require.NoError(t, err)
	return conn.Invoke(ctx, method, req, respType.New().Interface())
}

// TestAuthorizationMatrix calls every RPC with no token, a token lacking
// the RPC's scope, a token with the scope on another namespace, and the
// right token, on a real server.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		f, admin := startAuthServer(t, db, time.Minute)
		f.seed(t, admin)
		shop := &taskerv1.EventFilter{Namespace: "shop"}
		heartbeat := durationpb.New(100 * time.Millisecond)

		// What each RPC needs and a request on namespace shop. Namespace
		// free calls have no wrong-namespace case.
		cases := map[string]struct {
			scope  auth.Scope
			req    func() proto.Message
			noNSes bool
		}{
			"/tasker.v1.RegistryService/RegisterTaskTemplate": {auth.TemplatesWrite, func() proto.Message {
				return &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "2.0.0")}
			}, false},
			"/tasker.v1.RegistryService/GetTaskTemplate": {auth.TemplatesRead, func() proto.Message {
				return &taskerv1.GetTaskTemplateRequest{Namespace: "shop", Name: "diamond"}
			}, false},
			"/tasker.v1.RegistryService/ListTaskTemplates": {auth.TemplatesRead, func() proto.Message {
				return &taskerv1.ListTaskTemplatesRequest{Namespace: "shop"}
			}, false},
			"/tasker.v1.RegistryService/ListNamespaces": {auth.TemplatesRead, func() proto.Message {
				return &taskerv1.ListNamespacesRequest{}
			}, true},
			"/tasker.v1.RegistryService/ListHandlers": {auth.TemplatesRead, func() proto.Message {
				return &taskerv1.ListHandlersRequest{Namespace: "shop"}
			}, false},
			"/tasker.v1.TaskService/CreateTask": {auth.TasksWrite, func() proto.Message {
				return &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "2")}
			}, false},
			"/tasker.v1.TaskService/BatchCreateTasks": {auth.TasksWrite, func() proto.Message {
				return &taskerv1.BatchCreateTasksRequest{Tasks: []*taskerv1.CreateTaskRequest{{Namespace: "shop", Name: "diamond", Context: orderContext(t, "3")}}}
			}, false},
			"/tasker.v1.TaskService/GetTask":      {auth.TasksRead, func() proto.Message { return &taskerv1.GetTaskRequest{Id: f.taskID} }, false},
			"/tasker.v1.TaskService/GetTaskGraph": {auth.TasksRead, func() proto.Message { return &taskerv1.GetTaskGraphRequest{Id: f.taskID} }, false},
			"/tasker.v1.TaskService/ListTasks": {auth.TasksRead, func() proto.Message {
				return &taskerv1.ListTasksRequest{Namespace: "shop"}
			}, false},
			"/tasker.v1.TaskService/GetTaskStats": {auth.TasksRead, func() proto.Message {
				return &taskerv1.GetTaskStatsRequest{Namespace: "shop"}
			}, false},
			"/tasker.v1.TaskService/CancelTask":  {auth.TasksOperate, func() proto.Message { return &taskerv1.CancelTaskRequest{Id: f.taskID} }, false},
			"/tasker.v1.TaskService/RetryTask":   {auth.TasksOperate, func() proto.Message { return &taskerv1.RetryTaskRequest{Id: f.taskID} }, false},
			"/tasker.v1.TaskService/ResolveTask": {auth.TasksOperate, func() proto.Message { return &taskerv1.ResolveTaskRequest{Id: f.taskID} }, false},
			"/tasker.v1.StepService/GetStep":     {auth.StepsRead, func() proto.Message { return &taskerv1.GetStepRequest{Id: f.stepID} }, false},
			"/tasker.v1.StepService/ListSteps": {auth.StepsRead, func() proto.Message {
				return &taskerv1.ListStepsRequest{TaskId: f.taskID}
			}, false},
			"/tasker.v1.StepService/RetryStep":   {auth.StepsOperate, func() proto.Message { return &taskerv1.RetryStepRequest{Id: f.stepID} }, false},
			"/tasker.v1.StepService/ResolveStep": {auth.StepsOperate, func() proto.Message { return &taskerv1.ResolveStepRequest{Id: f.stepID} }, false},
			"/tasker.v1.StepService/CancelStep":  {auth.StepsOperate, func() proto.Message { return &taskerv1.CancelStepRequest{Id: f.stepID} }, false},
			"/tasker.v1.StepService/ClaimSteps": {auth.StepsWork, func() proto.Message {
				return &taskerv1.ClaimStepsRequest{WorkerId: "w", MaxSteps: 1, Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}}}
			}, false},
			"/tasker.v1.StepService/ExtendLease": {auth.StepsWork, func() proto.Message {
				return &taskerv1.ExtendLeaseRequest{Leases: []*taskerv1.StepLease{{StepId: f.stepID, LeaseToken: f.lease}}, ExtendBy: durationpb.New(time.Minute)}
			}, false},
			"/tasker.v1.StepService/CompleteStep": {auth.StepsWork, func() proto.Message {
				return &taskerv1.CompleteStepRequest{StepId: f.stepID, LeaseToken: f.lease}
			}, false},
			"/tasker.v1.StepService/FailStep": {auth.StepsWork, func() proto.Message {
				return &taskerv1.FailStepRequest{StepId: f.stepID, LeaseToken: f.lease, Error: &taskerv1.StepError{Message: "no"}}
			}, false},
			"/tasker.v1.StepService/ReleaseStep": {auth.StepsWork, func() proto.Message {
				return &taskerv1.ReleaseStepRequest{StepId: f.stepID, LeaseToken: f.lease}
			}, false},
			"/tasker.v1.StepService/BatchCompleteSteps": {auth.StepsWork, func() proto.Message {
				return &taskerv1.BatchCompleteStepsRequest{Completions: []*taskerv1.StepCompletion{{StepId: f.stepID, LeaseToken: f.lease}}}
			}, false},
			"/tasker.v1.StepService/BatchFailSteps": {auth.StepsWork, func() proto.Message {
				return &taskerv1.BatchFailStepsRequest{Failures: []*taskerv1.StepFailure{{StepId: f.stepID, LeaseToken: f.lease, Error: &taskerv1.StepError{Message: "no"}}}}
			}, false},
			"/tasker.v1.EventService/Subscribe": {auth.EventsRead, func() proto.Message {
				return &taskerv1.SubscribeRequest{Filter: shop, HeartbeatInterval: heartbeat}
			}, false},
			"/tasker.v1.EventService/ListEvents": {auth.EventsRead, func() proto.Message {
				return &taskerv1.ListEventsRequest{Filter: shop}
			}, false},
			"/tasker.v1.EventService/PublishEvent": {auth.EventsPublish, func() proto.Message {
				return &taskerv1.PublishEventRequest{Type: "audit.checked", TaskId: f.taskID}
			}, false},
			"/tasker.v1.EventService/ListEventTypes": {auth.EventsRead, func() proto.Message { return &taskerv1.ListEventTypesRequest{} }, true},
		}

		methods := contractMethods(t)
		rules := server.RuleScopes()
		none := f.conn(t, "")
		for method, md := range methods {
			tc, ok := cases[method]
			require.True(t, ok, "%s has no case in this test", method)
			require.Equal(t, string(tc.scope), rules[method], "%s: the rule's scope differs from the documented one", method)
			name := string(md.Name())
			others := slices.DeleteFunc(slices.Clone(auth.Scopes), func(s auth.Scope) bool { return s == tc.scope || s == auth.Admin })
			wrongScope := f.conn(t, f.token(t, name+"-scope", others, "shop"))
			wrongNS := f.conn(t, f.token(t, name+"-ns", []auth.Scope{tc.scope}, "billing"))
			right := f.conn(t, f.token(t, name+"-right", []auth.Scope{tc.scope}, "shop"))
			ctx := testContext(t)

			err := call(ctx, t, none, md, method, tc.req())
			st := requireCode(t, err, codes.Unauthenticated)
			require.Equal(t, fault.ReasonTokenInvalid, errorInfo(st).GetReason(), method)

			st = requireCode(t, call(ctx, t, wrongScope, md, method, tc.req()), codes.PermissionDenied)
			require.Equal(t, fault.ReasonScopeMissing, errorInfo(st).GetReason(), method)
			require.Equal(t, string(tc.scope), errorInfo(st).GetMetadata()["scope"], method)

			if !tc.noNSes {
				st = requireCode(t, call(ctx, t, wrongNS, md, method, tc.req()), codes.PermissionDenied)
				require.Equal(t, fault.ReasonNamespaceDenied, errorInfo(st).GetReason(), method)
			} else {
				require.NoError(t, call(ctx, t, wrongNS, md, method, tc.req()), method)
			}

			err = call(ctx, t, right, md, method, tc.req())
			if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
				t.Fatalf("%s with the right token: %v", method, err)
			}
		}

		// Health needs no token.
		_, err := healthpb.NewHealthClient(none).Check(testContext(t), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	})
}

// TestAuthenticationFailures covers the tokens that are refused.
func TestAuthenticationFailures(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		f, _ := startAuthServer(t, db, 50*time.Millisecond)
		ctx := testContext(t)
		list := func(conn *grpc.ClientConn) error {
			_, err := taskerv1.NewEventServiceClient(conn).ListEventTypes(ctx, &taskerv1.ListEventTypesRequest{})
			return err
		}

		requireCode(t, list(f.conn(t, "tasker_made-up")), codes.Unauthenticated)
		requireCode(t, list(f.conn(t, "tasker_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")), codes.Unauthenticated)

		secret, _, err := f.store.Create(ctx, auth.CreateParams{Name: "short-lived", Scopes: []auth.Scope{auth.EventsRead},
			Namespaces: []string{"*"}, ExpiresIn: 300 * time.Millisecond})
		require.NoError(t, err)
		expiring := f.conn(t, secret)
		require.NoError(t, list(expiring))
		require.Eventually(t, func() bool { return status.Code(list(expiring)) == codes.Unauthenticated },
			10*time.Second, 20*time.Millisecond, "an expired token is refused")

		revoked := f.conn(t, f.token(t, "to-revoke", []auth.Scope{auth.EventsRead}, "*"))
		require.NoError(t, list(revoked))
		_, err = f.store.Revoke(ctx, "to-revoke")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			st, _ := status.FromError(list(revoked))
			return st.Code() == codes.Unauthenticated && st.Message() != ""
		}, 10*time.Second, 20*time.Millisecond, "a revocation takes effect once the cached lookup expires")

		// A raw header without the Bearer scheme.
		raw, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = raw.Close() })
		err = raw.Invoke(metadataCtx(ctx, "authorization", secret), "/tasker.v1.EventService/ListEventTypes",
			&taskerv1.ListEventTypesRequest{}, &taskerv1.ListEventTypesResponse{})
		requireCode(t, err, codes.Unauthenticated)
	})
}

func metadataCtx(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// TestAuthorizationLists checks that a token limited to namespaces reads
// nothing of the others through list calls and streams.
func TestAuthorizationLists(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		f, admin := startAuthServer(t, db, time.Minute)
		ctx := testContext(t)
		registry := taskerv1.NewRegistryServiceClient(admin)
		for _, ns := range []string{"shop", "billing"} {
			_, err := registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond(ns, "1.0.0")})
			require.NoError(t, err)
		}
		billingTask, err := taskerv1.NewTaskServiceClient(admin).CreateTask(ctx, &taskerv1.CreateTaskRequest{
			Namespace: "billing", Name: "diamond", Context: orderContext(t, "1"),
		})
		require.NoError(t, err)

		conn := f.conn(t, f.token(t, "shop-reader", []auth.Scope{auth.TemplatesRead, auth.TasksRead, auth.StepsRead, auth.EventsRead, auth.StepsWork}, "shop"))
		denied := func(err error) {
			t.Helper()
			st := requireCode(t, err, codes.PermissionDenied)
			require.Equal(t, fault.ReasonNamespaceDenied, errorInfo(st).GetReason())
		}

		nss, err := taskerv1.NewRegistryServiceClient(conn).ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
		require.NoError(t, err)
		require.Len(t, nss.GetNamespaces(), 1)
		require.Equal(t, "shop", nss.GetNamespaces()[0].GetName())

		tasks := taskerv1.NewTaskServiceClient(conn)
		_, err = tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{})
		denied(err)
		_, err = tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "billing"})
		denied(err)
		listed, err := tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "shop"})
		require.NoError(t, err)
		require.Empty(t, listed.GetTasks())
		_, err = tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: billingTask.GetTask().GetId()})
		denied(err)

		steps := taskerv1.NewStepServiceClient(conn)
		_, err = steps.ListSteps(ctx, &taskerv1.ListStepsRequest{TaskId: billingTask.GetTask().GetId()})
		denied(err)
		_, err = steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{WorkerId: "w", MaxSteps: 1, Handlers: []*taskerv1.HandlerRef{
			{Namespace: "shop", Handler: "work"}, {Namespace: "billing", Handler: "work"},
		}})
		denied(err)

		events := taskerv1.NewEventServiceClient(conn)
		_, err = events.ListEvents(ctx, &taskerv1.ListEventsRequest{})
		denied(err)
		_, err = events.ListEvents(ctx, &taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: billingTask.GetTask().GetId()}})
		denied(err)
		// On PostgreSQL the sequencer numbers events just after their
		// commit: wait until the shop's are listed.
		var page *taskerv1.ListEventsResponse
		require.Eventually(t, func() bool {
			page, err = events.ListEvents(ctx, &taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{Namespace: "shop"}})
			require.NoError(t, err)
			return len(page.GetEvents()) > 0
		}, 10*time.Second, 5*time.Millisecond, "the shop's events are listed")
		for _, e := range page.GetEvents() {
			require.Equal(t, "shop", e.GetNamespace())
		}
		for _, filter := range []*taskerv1.EventFilter{{}, {Namespace: "billing"}} {
			stream, err := events.Subscribe(ctx, &taskerv1.SubscribeRequest{Filter: filter})
			require.NoError(t, err)
			_, err = stream.Recv()
			denied(err)
		}
	})
}

// TestMutualTLS serves gRPC and the admin port over TLS that requires a
// client certificate from the test's CA.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	ca := servertest.NewCA(t)
	serverCert := ca.Issue(t, "server")
	clientCert := ca.Issue(t, "client")
	clientTLS := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert.Cert}}
	srv := servertest.Start(t, db, servertest.Options{
		Admin: true,
		Config: server.Config{TLS: &tls.Config{
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert.Cert},
			ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
		}},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))},
	})
	ctx := testContext(t)
	_, err := taskerv1.NewEventServiceClient(srv.Conn).ListEventTypes(ctx, &taskerv1.ListEventTypesRequest{})
	require.NoError(t, err)

	for name, creds := range map[string]grpc.DialOption{
		"no client certificate": grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool()})),
		"plaintext":             grpc.WithTransportCredentials(insecure.NewCredentials()),
		"certificate of another CA": grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(),
			Certificates: []tls.Certificate{servertest.NewCA(t).Issue(t, "stranger").Cert}})),
	} {
		conn, err := grpc.NewClient(srv.Addr, creds)
		require.NoError(t, err)
		_, err = taskerv1.NewEventServiceClient(conn).ListEventTypes(ctx, &taskerv1.ListEventTypesRequest{})
		require.Equal(t, codes.Unavailable, status.Code(err), "%s: %v", name, err)
		require.NoError(t, conn.Close())
	}

	healthz, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+srv.AdminAddr+"/healthz", nil)
	require.NoError(t, err)
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	resp, err := httpClient.Do(healthz)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	httpClient.CloseIdleConnections()
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool()}}}
	resp, err = plain.Do(healthz.Clone(ctx))
	if err == nil {
		_ = resp.Body.Close()
	}
	require.Error(t, err, "the admin port also requires a client certificate")
	plain.CloseIdleConnections()
}
