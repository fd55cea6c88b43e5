// Command diff writes the next versioned migration of each dialect: it
// replays storage/migrations/<dialect> on an empty scratch database, compares
// the result with ent/schema and, when they differ, writes the statements
// that close the gap as a new file named after the change, and updates the
// directory's atlas.sum. With -check it writes nothing and fails when a file
// would be written, which is how CI notices a schema change without its
// migration.
//
//	go run ./storage/migrations/diff -name add_api_tokens
//	go run ./storage/migrations/diff -check
//	go run ./storage/migrations/diff -rehash
//
// The PostgreSQL scratch database is created on the server of
// TASKER_DEV_POSTGRES_URL (default: the test server) and dropped afterwards.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"text/template"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	"github.com/jackc/pgx/v5"

	entmigrate "github.com/taskerhq/tasker/ent/migrate"
	"github.com/taskerhq/tasker/storage"
)

const defaultDevURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "diff:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "", "name of the change, lowercase_with_underscores (required unless -check)")
	check := flag.Bool("check", false, "write nothing; fail when ent/schema has changes without a migration")
	dir := flag.String("dir", "storage/migrations", "the migrations directory, holding one folder per dialect")
	rehash := flag.Bool("rehash", false, "rewrite each folder's atlas.sum from its files, after adding a hand-written migration")
	flag.Parse()
	if *rehash {
		for _, d := range []string{dialect.SQLite, dialect.Postgres} {
			if err := writeSum(filepath.Join(*dir, storage.MigrationFolder(d))); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
		return nil
	}
	if !*check && !namePattern.MatchString(*name) {
		return errors.New("-name must be lowercase_with_underscores, e.g. -name add_api_tokens")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One version for both dialects, so a change has the same file name in
	// each folder.
	formatter := make(atlasmigrate.TemplateFormatter, len(atlasmigrate.DefaultFormatter))
	copy(formatter, atlasmigrate.DefaultFormatter)
	formatter[0].N = template.Must(template.New("name").Parse(atlasmigrate.NewVersion() + "{{ with .Name }}_{{ . }}{{ end }}.sql"))
	failed := false
	for _, d := range []string{dialect.SQLite, dialect.Postgres} {
		written, err := diff(ctx, d, filepath.Join(*dir, storage.MigrationFolder(d)), *name, *check, formatter)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "diff: %s: %v\n", d, err)
			failed = true
		case written != "" && *check:
			fmt.Fprintf(os.Stderr, "diff: %s: ent/schema changed without a migration; run `make migration NAME=…` and commit the files. It would add:\n%s\n", d, written)
			failed = true
		case written != "":
			fmt.Printf("%s: wrote %s\n", d, written)
		default:
			fmt.Printf("%s: migrations match ent/schema\n", d)
		}
	}
	if failed {
		return errors.New("failed")
	}
	return nil
}

// diff plans the migration of one dialect. It returns what it wrote (the
// file name, or the statements when checking), or "" when the directory
// already matches ent/schema.
func diff(ctx context.Context, d, path, name string, check bool, formatter atlasmigrate.Formatter) (string, error) {
	db, cleanup, err := scratch(ctx, d)
	if err != nil {
		return "", err
	}
	defer cleanup()

	local, err := atlasmigrate.NewLocalDir(path)
	if err != nil {
		return "", err
	}
	var target atlasmigrate.Dir = local
	mem := atlasmigrate.OpenMemDir("tasker-diff-" + d + "-" + randomHex())
	defer mem.Close()
	if check {
		// Plan into a copy, so a check leaves the tree as it was.
		if err := copyDir(local, mem); err != nil {
			return "", err
		}
		target = mem
	}
	before, err := target.Files()
	if err != nil {
		return "", err
	}
	m, err := schema.NewMigrate(entsql.OpenDB(d, db.Writer),
		schema.WithDir(target),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(d),
		schema.WithFormatter(formatter),
		// Index drops are planned: an older binary runs correctly, if
		// slower, without an index it declared. Column drops are not: they
		// would break an older replica mid-upgrade, so they are written by
		// hand once no running version reads the column.
		schema.WithDropIndex(true),
		schema.WithErrNoPlan(true),
	)
	if err != nil {
		return "", err
	}
	if name == "" {
		name = "check"
	}
	switch err := m.NamedDiff(ctx, name, entmigrate.Tables...); {
	case errors.Is(err, atlasmigrate.ErrNoPlan):
		return "", nil
	case err != nil:
		return "", err
	}
	after, err := target.Files()
	if err != nil {
		return "", err
	}
	if len(after) <= len(before) {
		return "", errors.New("a plan was made but no file was written")
	}
	added := after[len(after)-1]
	if check {
		return string(added.Bytes()), nil
	}
	return filepath.Join(path, added.Name()), nil
}

// scratch opens an empty database of dialect d: a SQLite file in a temporary
// folder, or a new database on the development PostgreSQL server.
func scratch(ctx context.Context, d string) (*storage.DB, func(), error) {
	if d == dialect.SQLite {
		tmp, err := os.MkdirTemp("", "tasker-diff-")
		if err != nil {
			return nil, nil, err
		}
		db, err := storage.Open(ctx, filepath.Join(tmp, "scratch.db"), storage.Options{})
		if err != nil {
			_ = os.RemoveAll(tmp)
			return nil, nil, err
		}
		return db, func() { _ = db.Close(); _ = os.RemoveAll(tmp) }, nil
	}
	base := os.Getenv("TASKER_DEV_POSTGRES_URL")
	if base == "" {
		base = os.Getenv("TASKER_TEST_POSTGRES_URL")
	}
	if base == "" {
		base = defaultDevURL
	}
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, nil, fmt.Errorf("the PostgreSQL scratch database needs a server (TASKER_DEV_POSTGRES_URL): %w", err)
	}
	name := "tasker_diff_" + randomHex()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		_ = admin.Close(ctx)
		return nil, nil, err
	}
	drop := func() {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		_ = admin.Close(context.WithoutCancel(ctx))
	}
	u, err := url.Parse(base)
	if err != nil {
		drop()
		return nil, nil, errors.New("TASKER_DEV_POSTGRES_URL is not a URL")
	}
	u.Path = "/" + name
	db, err := storage.Open(ctx, u.String(), storage.Options{MaxConns: 2})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return db, func() { _ = db.Close(); drop() }, nil
}

// writeSum rewrites the atlas.sum of the folder at path from its files.
func writeSum(path string) error {
	local, err := atlasmigrate.NewLocalDir(path)
	if err != nil {
		return err
	}
	sum, err := local.Checksum()
	if err != nil {
		return err
	}
	return atlasmigrate.WriteSumFile(local, sum)
}

// copyDir copies the migration files and atlas.sum of from into to.
func copyDir(from *atlasmigrate.LocalDir, to atlasmigrate.Dir) error {
	files, err := from.Files()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := to.WriteFile(f.Name(), f.Bytes()); err != nil {
			return err
		}
	}
	sum, err := os.ReadFile(filepath.Join(from.Path(), atlasmigrate.HashFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	return to.WriteFile(atlasmigrate.HashFileName, sum)
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
