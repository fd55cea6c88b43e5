package registry

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type testBundle struct {
	ctx   context.Context
	db    *storage.DB
	store *Store
}

func setup(t *testing.T, db *storage.DB) *testBundle {
	t.Helper()
	return &testBundle{ctx: t.Context(), db: db, store: NewStore(db)}
}

// counts returns the number of namespace, template and step template rows.
func (b *testBundle) counts(t *testing.T) [3]int {
	t.Helper()
	ns, err := b.db.Reader.Namespace.Query().Count(b.ctx)
	require.NoError(t, err)
	tpl, err := b.db.Reader.TaskTemplate.Query().Count(b.ctx)
	require.NoError(t, err)
	steps, err := b.db.Reader.StepTemplate.Query().Count(b.ctx)
	require.NoError(t, err)
	return [3]int{ns, tpl, steps}
}

// events returns the type, version and correlation id of every event
// logged, in order.
func (b *testBundle) events(t *testing.T) []string {
	t.Helper()
	evs, err := b.db.Reader.Event.Query().Order(event.ByID()).All(b.ctx)
	require.NoError(t, err)
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+" "+e.Namespace+"/"+e.TemplateName+"@"+e.TemplateVersion+" "+e.CorrelationID)
	}
	return out
}

// stored is what the Store must answer for a registration of in: the
// normalized template plus the output-only fields of got.
func stored(in, got *taskerv1.TaskTemplate) *taskerv1.TaskTemplate {
	want := Normalize(in)
	want.CreateTime = got.GetCreateTime()
	want.UpdateTime = got.GetUpdateTime()
	want.ContentHash = ContentHash(in)
	return want
}

func TestRegister(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		in := validTemplate()
		in.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT
		row, outcome, err := b.store.Register(correlation.WithID(b.ctx, "c-1"), in, false)
		require.NoError(t, err)
		require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_CREATED, outcome)
		registered := "registry.template_registered shop.eu-west/order_fulfillment@1.2.0-rc.1 c-1"
		require.Equal(t, []string{registered}, b.events(t))
		require.Equal(t, row.CreateTime.AsTime(), row.UpdateTime.AsTime())
		require.WithinDuration(t, time.Now(), row.CreateTime.AsTime(), time.Minute)
		require.Empty(t, cmpDiff(stored(in, row), row))
		require.Equal(t, [3]int{1, 1, 4}, b.counts(t))

		got, err := b.store.Get(b.ctx, in.Namespace, in.Name, in.Version)
		require.NoError(t, err)
		require.Empty(t, cmpDiff(row, got), "read back equals what Register returned")
		require.Equal(t, ContentHash(got), got.ContentHash, "the stored form hashes to the stored hash")
		resolved, err := b.store.Resolve(b.ctx, in.Namespace, in.Name, in.Version)
		require.NoError(t, err)
		require.Equal(t, got.ContentHash, resolved.ContentHash)
		require.Empty(t, cmpDiff(got, toProto(resolved)), "the engine's row is the same version")

		t.Run("identical content is unchanged and writes nothing", func(t *testing.T) {
			again := proto.Clone(in).(*taskerv1.TaskTemplate)
			again.CreateTime = timestamppb.Now() // output only: ignored
			row2, outcome, err := b.store.Register(b.ctx, again, false)
			require.NoError(t, err)
			require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED, outcome)
			require.Empty(t, cmpDiff(row, row2))
			require.Equal(t, [3]int{1, 1, 4}, b.counts(t))

			// Normalized input, as GetTaskTemplate returns it, is the same
			// content too.
			_, outcome, err = b.store.Register(b.ctx, row, false)
			require.NoError(t, err)
			require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED, outcome)
			require.Equal(t, []string{registered}, b.events(t))
		})

		changed := proto.Clone(in).(*taskerv1.TaskTemplate)
		changed.Steps = changed.Steps[:2]
		changed.Steps[1].Config = mustStruct(map[string]any{"mode": "fast"})
		changed.ContextSchema = nil

		t.Run("different content without replace changes nothing", func(t *testing.T) {
			_, _, err := b.store.Register(b.ctx, changed, false)
			fe, ok := fault.As(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, fault.AlreadyExists, fe.Code)
			require.Equal(t, "task template", fe.ResourceType)
			require.Equal(t, "shop.eu-west/order_fulfillment@1.2.0-rc.1", fe.ResourceName)
			require.Equal(t, [3]int{1, 1, 4}, b.counts(t))
			require.Equal(t, []string{registered}, b.events(t))
			got, err := b.store.Get(b.ctx, in.Namespace, in.Name, in.Version)
			require.NoError(t, err)
			require.Empty(t, cmpDiff(row, got))
		})

		t.Run("replace", func(t *testing.T) {
			time.Sleep(2 * time.Millisecond) // so update_time visibly moves
			row3, outcome, err := b.store.Register(correlation.WithID(b.ctx, "c-2"), changed, true)
			require.NoError(t, err)
			require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_REPLACED, outcome)
			require.Equal(t, []string{registered, "registry.template_replaced shop.eu-west/order_fulfillment@1.2.0-rc.1 c-2"}, b.events(t))
			require.Equal(t, row.CreateTime.AsTime(), row3.CreateTime.AsTime())
			require.True(t, row3.UpdateTime.AsTime().After(row.UpdateTime.AsTime()))
			require.Empty(t, cmpDiff(stored(changed, row3), row3))
			require.Equal(t, [3]int{1, 1, 2}, b.counts(t), "the version's row is updated in place")

			got, err := b.store.Get(b.ctx, in.Namespace, in.Name, in.Version)
			require.NoError(t, err)
			require.Empty(t, cmpDiff(row3, got))

			// Replacing with the same content again is unchanged.
			_, outcome, err = b.store.Register(b.ctx, changed, true)
			require.NoError(t, err)
			require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED, outcome)
			require.Len(t, b.events(t), 2)
		})
	})
}

func TestRegisterRoundTripsEveryField(t *testing.T) {
	t.Parallel()
	loaded, err := LoadDir("../examples/templates")
	require.NoError(t, err)
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		in := validTemplate()
		in.Steps[0].Config = mustStruct(map[string]any{
			"nested": map[string]any{"list": []any{1.5, "x", true, nil, map[string]any{}}, "big": 1e21},
			"empty":  []any{},
		})
		// Values with no kind read back as null; Normalize says so.
		in.Steps[0].Config.Fields["unset"] = &structpb.Value{}
		in.Steps[3].ExecutionTimeout = nil
		in.ContextSchema = &structpb.Struct{}
		for _, tpl := range []*taskerv1.TaskTemplate{in, loaded[0].Template, loaded[1].Template, loaded[2].Template} {
			row, _, err := b.store.Register(b.ctx, tpl, false)
			require.NoError(t, err)
			require.Empty(t, cmpDiff(stored(tpl, row), row), ref(tpl))
			got, err := b.store.Get(b.ctx, tpl.Namespace, tpl.Name, tpl.Version)
			require.NoError(t, err)
			require.Empty(t, cmpDiff(stored(tpl, row), got), ref(tpl))
		}
	})
}

func TestRegisterInvalidWritesNothing(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		in := validTemplate()
		in.Steps[0].DependsOn = []string{"d"}
		_, _, err := b.store.Register(b.ctx, in, true)
		requireViolations(t, err, "template.steps[0].depends_on[0]")
		require.Equal(t, [3]int{0, 0, 0}, b.counts(t))
		require.Empty(t, b.events(t))
	})
}

func TestRegisterConcurrent(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		const n = 8
		// Registers n copies of version at once, and with them n other
		// versions, and checks that exactly one copy created the version.
		race := func(version string) {
			var (
				wg       sync.WaitGroup
				outcomes = make([]taskerv1.RegistrationOutcome, n)
				errs     = make([]error, 2*n)
			)
			for i := range n {
				wg.Go(func() {
					tpl := validTemplate()
					tpl.Version = version
					_, outcomes[i], errs[i] = b.store.Register(b.ctx, tpl, false)
				})
				wg.Go(func() {
					tpl := validTemplate()
					tpl.Version = fmt.Sprintf("%s-other.%d", version, i)
					_, _, errs[n+i] = b.store.Register(b.ctx, tpl, false)
				})
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			created := 0
			for _, o := range outcomes {
				if o == taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_CREATED {
					created++
				} else {
					require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED, o)
				}
			}
			require.Equal(t, 1, created)
		}
		// In a new namespace, which they all create at once too.
		race("1.0.0")
		require.Equal(t, [3]int{1, n + 1, 4 * (n + 1)}, b.counts(t))
		// In an existing namespace, where the inserts of the version race.
		race("2.0.0")
		require.Equal(t, [3]int{1, 2 * (n + 1), 8 * (n + 1)}, b.counts(t))
		require.Len(t, b.events(t), 2*(n+1), "one event per version created, none for the unchanged")
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		register := func(ns, name, version string) {
			tpl := validTemplate()
			tpl.Namespace, tpl.Name, tpl.Version = ns, name, version
			_, _, err := b.store.Register(b.ctx, tpl, false)
			require.NoError(t, err)
		}
		for _, v := range []string{"1.9.0", "1.10.0", "2.0.0-rc.1", "1.10.0-rc.1"} {
			register("shop", "order", v)
		}
		register("shop", "beta", "0.2.0-beta.1")
		register("shop", "beta", "0.2.0-alpha.3")
		register("other", "order", "9.0.0")

		for _, tc := range []struct{ name, version, want string }{
			{"order", "", "1.10.0"},
			{"order", "2.0.0-rc.1", "2.0.0-rc.1"},
			{"order", "1.9.0", "1.9.0"},
			{"beta", "", "0.2.0-beta.1"},
		} {
			got, err := b.store.Get(b.ctx, "shop", tc.name, tc.version)
			require.NoError(t, err)
			require.Equal(t, tc.want, got.Version)
			require.Equal(t, "shop", got.Namespace)
			require.Len(t, got.Steps, 4)
		}

		for _, tc := range []struct{ ns, name, version, resource string }{
			{"shop", "order", "1.0.0", "shop/order@1.0.0"},
			{"shop", "nope", "", "shop/nope"},
			{"nope", "order", "", "nope/order"},
		} {
			_, err := b.store.Get(b.ctx, tc.ns, tc.name, tc.version)
			fe, ok := fault.As(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, fault.NotFound, fe.Code)
			require.Equal(t, tc.resource, fe.ResourceName)
		}

		_, err := b.store.Get(b.ctx, "shop", "order", "v1.10.0")
		requireViolations(t, err, "version")
		_, err = b.store.Get(b.ctx, "", "", "")
		requireViolations(t, err, "namespace", "name")

		// Inside a transaction, as the engine resolves a task's template.
		err = db.Tx(b.ctx, func(tx *ent.Tx) error {
			got, err := b.store.GetTx(b.ctx, tx, "shop", "order", "")
			require.NoError(t, err)
			require.Equal(t, "1.10.0", got.Version)
			require.Equal(t, []string{"a", "b", "c", "d"}, stepNames(got))
			return nil
		})
		require.NoError(t, err)
	})
}

func stepNames(row *ent.TaskTemplate) []string {
	var names []string
	for _, s := range row.Edges.Steps {
		names = append(names, s.Name)
	}
	return names
}

func TestList(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		// Registered out of order; listed by namespace, then name, then
		// version string, each compared bytewise on both dialects.
		for _, r := range [][3]string{
			{"b", "x", "1.0.0"}, {"a", "y", "1.0.0"}, {"a", "x", "1.10.0"}, {"a", "x", "1.9.0"}, {"a-b", "x", "1.0.0"},
			{"a.b", "x", "1.0.0"}, {"a_b", "x", "1.0.0"}, {"a", "x-y", "1.0.0"}, {"a", "x_y", "1.0.0"}, {"a", "x", "2.0.0-rc.1"},
		} {
			tpl := validTemplate()
			tpl.Namespace, tpl.Name, tpl.Version = r[0], r[1], r[2]
			_, _, err := b.store.Register(b.ctx, tpl, false)
			require.NoError(t, err)
		}
		listAll := func(opts ListOptions) []string {
			var got []string
			for pages := 0; ; pages++ {
				require.Less(t, pages, 20)
				rows, next, err := b.store.List(b.ctx, opts)
				require.NoError(t, err)
				require.LessOrEqual(t, len(rows), cmp.Or(int(opts.PageSize), 50))
				for _, r := range rows {
					require.Len(t, r.Steps, 4)
					got = append(got, ref(r))
				}
				if next == "" {
					return got
				}
				opts.PageToken = next
			}
		}
		all := []string{
			"a/x@1.10.0", "a/x@1.9.0", "a/x@2.0.0-rc.1", "a/x-y@1.0.0", "a/x_y@1.0.0", "a/y@1.0.0",
			"a-b/x@1.0.0", "a.b/x@1.0.0", "a_b/x@1.0.0", "b/x@1.0.0",
		}
		require.Equal(t, all, listAll(ListOptions{}))
		require.Equal(t, all, listAll(ListOptions{PageSize: 1}))
		require.Equal(t, all, listAll(ListOptions{PageSize: 3}))
		require.Equal(t, all[:6], listAll(ListOptions{Namespace: "a", PageSize: 4}))
		require.Equal(t, []string{"a/x@1.10.0", "a/x@1.9.0", "a/x@2.0.0-rc.1", "a-b/x@1.0.0", "a.b/x@1.0.0", "a_b/x@1.0.0", "b/x@1.0.0"},
			listAll(ListOptions{Name: "x", PageSize: 2}))
		require.Equal(t, []string{"a/x@1.10.0", "a/x@1.9.0", "a/x@2.0.0-rc.1"}, listAll(ListOptions{Namespace: "a", Name: "x", PageSize: 2}))
		require.Empty(t, listAll(ListOptions{Namespace: "zzz"}))

		_, next, err := b.store.List(b.ctx, ListOptions{Namespace: "a", PageSize: 2})
		require.NoError(t, err)
		require.NotEmpty(t, next)
		_, _, err = b.store.List(b.ctx, ListOptions{Namespace: "b", PageSize: 2, PageToken: next})
		requireViolations(t, err, "page_token")
		_, _, err = b.store.List(b.ctx, ListOptions{Namespace: "a", Name: "x", PageSize: 2, PageToken: next})
		requireViolations(t, err, "page_token")
		_, _, err = b.store.List(b.ctx, ListOptions{PageToken: "garbage"})
		requireViolations(t, err, "page_token")
		_, _, err = b.store.List(b.ctx, ListOptions{PageSize: 501})
		requireViolations(t, err, "page_size")
		// A token from the namespace listing is not one of this listing.
		_, nsNext, err := b.store.Namespaces(b.ctx, 1, "")
		require.NoError(t, err)
		_, _, err = b.store.List(b.ctx, ListOptions{PageToken: nsNext})
		requireViolations(t, err, "page_token")
	})
}

func TestNamespaces(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		got, next, err := b.store.Namespaces(b.ctx, 0, "")
		require.NoError(t, err)
		require.Empty(t, got)
		require.Empty(t, next)

		before := time.Now().Add(-time.Second)
		counts := map[string]int{"b": 1, "a": 3, "a-b": 2, "c": 1}
		for ns, n := range counts {
			for i := range n {
				tpl := validTemplate()
				tpl.Namespace, tpl.Version = ns, fmt.Sprintf("1.0.%d", i)
				_, _, err := b.store.Register(b.ctx, tpl, false)
				require.NoError(t, err)
			}
		}
		var names []string
		token := ""
		for {
			page, next, err := b.store.Namespaces(b.ctx, 3, token)
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), 3)
			for _, ns := range page {
				names = append(names, ns.Name)
				require.Equal(t, counts[ns.Name], ns.TemplateCount, ns.Name)
				require.True(t, ns.CreateTime.After(before), ns.Name)
			}
			if next == "" {
				break
			}
			token = next
		}
		require.Equal(t, []string{"a", "a-b", "b", "c"}, names)

		_, _, err = b.store.Namespaces(b.ctx, -1, "")
		requireViolations(t, err, "page_size")
		_, _, err = b.store.Namespaces(b.ctx, 1, "e30")
		requireViolations(t, err, "page_token")
	})
}
