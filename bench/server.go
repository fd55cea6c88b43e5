package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/storage"
)

// Where the server of a bench run lives.
const (
	serverChild     = "child"
	serverInProcess = "in-process"
	serverTarget    = "target"
)

// benchServer is the server one scenario runs against: a `tasker serve`
// child process on a fresh database (the default), the same assembled in
// this process (--in-process), or a running server (--target).
type benchServer struct {
	addr string
	mode string
	// database is "sqlite", "postgres", or "unknown" for a target without
	// --database.
	database   string
	durability string
	// pid is the child's process id; 0 otherwise.
	pid int
	// pgName is the bench's PostgreSQL database, whose backends' CPU time
	// is read from /proc when the server runs on this machine.
	pgName string

	// driverToken and workerToken are sent by the bench's own calls and
	// by its workers when the server requires tokens; empty otherwise.
	driverToken string
	workerToken string
	authMode    string

	cleanups []func() error
	keepMsgs []string
	stopOnce sync.Once
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// redactURL drops the password from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(malformed URL)"
	}
	return u.Redacted()
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func startBenchServer(ctx context.Context, f benchFlags, scenario, authMode string, stderr io.Writer) (*benchServer, error) {
	s := &benchServer{mode: serverChild, database: "sqlite", authMode: authMode}
	if f.target != "" {
		s.mode, s.addr, s.database, s.durability = serverTarget, f.target, "unknown", "unknown"
		s.driverToken, s.workerToken = f.token, f.token
		if f.database != "" {
			// The target's database, only to report its durability.
			s.database = "postgres"
			s.durability = durabilityOf(ctx, f.database, f.sqliteSynchronous)
		}
		return s, nil
	}
	if f.inProcess {
		s.mode = serverInProcess
	}
	dbURL, err := s.freshDatabase(ctx, f, scenario)
	if err != nil {
		return nil, err
	}
	s.durability = durabilityOf(ctx, dbURL, f.sqliteSynchronous)
	if authMode == authToken {
		if err := s.createTokens(ctx, dbURL, f.sqliteSynchronous); err != nil {
			s.stop(stderr)
			return nil, err
		}
	}
	if f.inProcess {
		err = s.startInProcess(ctx, dbURL, f.sqliteSynchronous)
	} else {
		err = s.startChild(ctx, dbURL, f.sqliteSynchronous)
	}
	if err != nil {
		s.stop(stderr)
		return nil, err
	}
	return s, nil
}

// freshDatabase makes an empty database for one scenario: a SQLite file in
// a new temporary directory, or a new PostgreSQL database on the server of
// --database. Both are removed by stop unless --keep.
func (s *benchServer) freshDatabase(ctx context.Context, f benchFlags, scenario string) (string, error) {
	if f.database == "" {
		dir, err := os.MkdirTemp("", "tasker-bench-")
		if err != nil {
			return "", err
		}
		if f.keep {
			s.keepMsgs = append(s.keepMsgs, fmt.Sprintf("kept %s database in %s", scenario, dir))
		} else {
			s.cleanups = append(s.cleanups, func() error { return os.RemoveAll(dir) })
		}
		return filepath.Join(dir, "tasker.db"), nil
	}
	s.database = "postgres"
	name := "tasker_bench_" + randomSuffix()
	s.pgName = name
	dbURL, drop, err := createPGDatabase(ctx, f.database, name)
	if err != nil {
		return "", err
	}
	if f.keep {
		s.keepMsgs = append(s.keepMsgs, fmt.Sprintf("kept %s database %s", scenario, name))
	} else {
		s.cleanups = append(s.cleanups, drop)
	}
	return dbURL, nil
}

// createPGDatabase creates the database name on the PostgreSQL server of
// serverURL and returns its URL and a function that drops it.
func createPGDatabase(ctx context.Context, serverURL, name string) (dbURL string, drop func() error, err error) {
	base, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, errors.New("--database: malformed URL")
	}
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("--database %s: %w", redactURL(serverURL), err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	}
	u := *base
	u.Path = "/" + name
	return u.String(), drop, nil
}

// durabilityOf reports what a commit survives on dbURL, as storage sees it
// with the settings the bench gives the server.
func durabilityOf(ctx context.Context, dbURL, synchronous string) string {
	db, err := storage.Open(ctx, dbURL, storage.Options{Synchronous: synchronous, MaxConns: 1, ReadConns: 1})
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer db.Close()
	info, err := db.DurabilityInfo(ctx)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return info
}

// startChild runs `tasker serve` from this very binary on dbURL, listening
// on a loopback port it picks, and returns once it serves.
func (s *benchServer) startChild(ctx context.Context, dbURL, synchronous string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to run the server: %w", err)
	}
	// WithoutCancel: the child must get SIGTERM and drain, not a kill when
	// the scenario's context ends.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), exe, "serve", "--database", dbURL, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "",
		"--templates", "", "--sqlite-synchronous", synchronous, "--log-level", "info", "--log-format", "json", "--auth", s.authMode,
		// The http_diamond scenario's no-op service listens on loopback.
		"--http-allow-hosts", benchHTTPAllow)
	// Settings from the environment would make the child differ from what
	// the results say.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TASKER_") })
	// The child must not outlive a bench that is killed (where the system
	// can say so).
	cmd.SysProcAttr = childProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the server: %w", err)
	}
	s.pid = cmd.Process.Pid
	exited := make(chan struct{})
	addr := make(chan string, 1)
	tail := &lineTail{max: 20}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg      string `json:"msg"`
				GRPCAddr string `json:"grpc_addr"`
			}
			tail.add(sc.Text())
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				addr <- line.GRPCAddr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cleanups = append([]func() error{func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("the server exited with status %d:\n%s", code, tail.String())
		}
		return nil
	}}, s.cleanups...)
	select {
	case s.addr = <-addr:
		return nil
	case <-exited:
		return fmt.Errorf("the server exited before serving:\n%s", tail.String())
	case <-time.After(2 * time.Minute):
		return errors.New("the server did not start serving within 2 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startInProcess assembles the server the way `tasker serve` does, in this
// process, on a loopback port.
func (s *benchServer) startInProcess(ctx context.Context, dbURL, synchronous string) error {
	log := slog.New(slog.DiscardHandler)
	db, err := storage.Open(ctx, dbURL, storage.Options{Synchronous: synchronous})
	if err != nil {
		return err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return err
	}
	templates, eventLog, eng := server.Components(log, db)
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return err
	}
	s.addr = lis.Addr().String()
	cfg := server.Config{ShutdownTimeout: 10 * time.Second, Builtins: benchBuiltins()}
	if s.authMode == authToken {
		cfg.Authenticator = auth.NewAuthenticator(auth.NewStore(db), log, auth.AuthenticatorOptions{})
	}
	srv := server.New(log, db, templates, eng, eventLog, cfg)
	serveCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(serveCtx, lis, nil) }()
	s.cleanups = append([]func() error{func() error {
		stop()
		err := <-done
		return errors.Join(err, db.Close())
	}}, s.cleanups...)
	return nil
}

// The bench's --auth modes.
const (
	authNone  = "none"
	authToken = "token"
)

// benchNamespace is the namespace of a bench on a server it starts.
const benchNamespace = "bench"

// createTokens migrates the fresh database and stores the bench's tokens
// in it, as `tasker token create` would: the workers' holds only
// steps:work on the bench namespace, so each of their calls goes through
// the namespace checks; the bench's own calls hold the other scopes.
func (s *benchServer) createTokens(ctx context.Context, dbURL, synchronous string) error {
	db, err := storage.Open(ctx, dbURL, storage.Options{Synchronous: synchronous})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	store := auth.NewStore(db)
	s.workerToken, _, err = store.Create(ctx, auth.CreateParams{
		Name: "bench-workers", Scopes: []auth.Scope{auth.StepsWork}, Namespaces: []string{benchNamespace},
	})
	if err != nil {
		return err
	}
	s.driverToken, _, err = store.Create(ctx, auth.CreateParams{
		Name: "bench-driver", Namespaces: []string{auth.AllNamespaces},
		Scopes: slices.DeleteFunc(slices.Clone(auth.Scopes), func(sc auth.Scope) bool { return sc == auth.Admin }),
	})
	return err
}

// stop ends the server and removes the database, reporting problems on
// stderr: the results are measured by then.
func (s *benchServer) stop(stderr io.Writer) {
	s.stopOnce.Do(func() {
		for _, c := range s.cleanups {
			if err := c(); err != nil {
				fmt.Fprintf(stderr, "bench: clean up: %v\n", err)
			}
		}
		for _, m := range s.keepMsgs {
			fmt.Fprintf(stderr, "bench: %s\n", m)
		}
	})
}

// rss returns the server process's peak and current resident set in MiB,
// from /proc (Linux); nil when the bench did not start the server as a
// child process, or /proc cannot tell.
func (s *benchServer) rss() (peak, current *float64) {
	if s.pid == 0 {
		return nil, nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return nil, nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if err != nil {
			continue
		}
		mb := kb / 1024
		if key == "VmHWM" {
			peak = &mb
		} else {
			current = &mb
		}
	}
	return peak, current
}

// cpu returns the CPU time (user + system) the server process has used so
// far, and false when the bench did not start it as a child process.
func (s *benchServer) cpu() (time.Duration, bool) {
	if s.pid == 0 {
		return 0, false
	}
	return procCPU(strconv.Itoa(s.pid))
}

// procCPU returns the CPU time (user + system) of process pid.
func procCPU(pid string) (time.Duration, bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces; the fields after it are fixed:
	// utime and stime are the 14th and 15th, in clock ticks.
	_, rest, ok := strings.Cut(string(raw), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// Linux reports in USER_HZ, 100 on every architecture Go supports.
	return time.Duration(utime+stime) * (time.Second / 100), true
}

// dbCPU returns the CPU time used so far by the PostgreSQL backends serving
// the bench database (see pgBackendCPU).
func (s *benchServer) dbCPU() (time.Duration, bool) {
	if s.pgName == "" {
		return 0, false
	}
	return pgBackendCPU(s.pgName)
}

// pgBackendCPU returns the CPU time used so far by the PostgreSQL backends
// serving database name, when they run on this machine (their process
// titles name the database), and false otherwise. Backends that exited
// are not counted; the servers' pools keep their connections.
func pgBackendCPU(name string) (time.Duration, bool) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var total time.Duration
	found := false
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, []byte(" "+name+" ")) {
			continue
		}
		if c, ok := procCPU(d.Name()); ok {
			total += c
			found = true
		}
	}
	return total, found
}

// loadAverage is the one-minute load average, so a result measured on a
// busy machine says so; nil where /proc/loadavg is missing.
func loadAverage() *float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(raw))
	if len(fields) == 0 {
		return nil
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return nil
	}
	return &v
}

// lineTail keeps the last lines of a child's log for error messages.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b bytes.Buffer
	for _, l := range t.lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
