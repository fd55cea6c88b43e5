package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/storage"
)

// tokenDBFlags are the database flags the token commands share: they work
// on the database directly, so the first token needs no running server.
type tokenDBFlags struct {
	database    string
	synchronous string
}

func (f *tokenDBFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.database, "database", env("TASKER_DATABASE_URL", "./tasker.db"), "database URL; prefer TASKER_DATABASE_URL for a URL with a password [TASKER_DATABASE_URL]")
	cmd.Flags().StringVar(&f.synchronous, "sqlite-synchronous", env("TASKER_SQLITE_SYNCHRONOUS", "normal"), "SQLite durability: normal or full [TASKER_SQLITE_SYNCHRONOUS]")
}

// open opens and migrates the database, so a token can be made before
// the server first starts.
func (f *tokenDBFlags) open(ctx context.Context) (*storage.DB, error) {
	db, _, err := openAndMigrate(ctx, f.database, f.synchronous, true)
	return db, err
}

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (directly in the database)",
		Long: "Create, list and revoke the API tokens a server started with --auth token (or auto, off loopback) accepts.\n" +
			"These commands work on the database itself, so the first token needs no running server. A token is\n" +
			"shown once, at creation; only its hash is stored. A revocation reaches every server within seconds.",
	}
	cmd.AddCommand(tokenCreateCommand(), tokenListCommand(), tokenRevokeCommand())
	return cmd
}

func tokenCreateCommand() *cobra.Command {
	var db tokenDBFlags
	var name, scopes, namespaces string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "create --name NAME --scopes S1,S2 --namespaces N1,N2|'*' [--expires 720h]",
		Short: "Create a token and print it, once",
		Long: "Create a token and print it on stdout, once: it cannot be shown again. Scopes: " + scopeList() + ".\n" +
			"admin holds every scope on every namespace. --namespaces '*' covers every namespace.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := auth.ParseScopes(scopes)
			if err != nil {
				return fmt.Errorf("--scopes: %w", err)
			}
			var nss []string
			for ns := range strings.SplitSeq(namespaces, ",") {
				if ns = strings.TrimSpace(ns); ns != "" {
					nss = append(nss, ns)
				}
			}
			if expires < 0 {
				return fmt.Errorf("--expires: want a positive duration such as 720h, or 0 for none; got %s", expires)
			}
			ctx := cmd.Context()
			store, closeDB, err := openTokenStore(ctx, db)
			if err != nil {
				return err
			}
			defer closeDB()
			secret, tok, err := store.Create(ctx, auth.CreateParams{Name: name, Scopes: sc, Namespaces: nss, ExpiresIn: expires})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			fmt.Fprintf(cmd.ErrOrStderr(), "created token %q (%s on %s%s); it is shown only this once\n",
				tok.Name, joinScopes(tok.Scopes), strings.Join(tok.Namespaces, ","), expiryNote(tok))
			return nil
		},
	}
	db.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "unique name of the token, used to list and revoke it")
	fl.StringVar(&scopes, "scopes", "", "comma-separated scopes: "+scopeList())
	fl.StringVar(&namespaces, "namespaces", "", "comma-separated namespaces the token may act on, or '*' for all")
	fl.DurationVar(&expires, "expires", 0, "lifetime, e.g. 720h; 0 for no expiry")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("scopes")
	_ = cmd.MarkFlagRequired("namespaces")
	return cmd
}

func tokenListCommand() *cobra.Command {
	var db tokenDBFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, closeDB, err := openTokenStore(ctx, db)
			if err != nil {
				return err
			}
			defer closeDB()
			toks, err := store.List(ctx)
			if err != nil {
				return err
			}
			return printTokens(cmd.OutOrStdout(), toks, time.Now())
		},
	}
	db.register(cmd)
	return cmd
}

func tokenRevokeCommand() *cobra.Command {
	var db tokenDBFlags
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token; servers refuse it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, closeDB, err := openTokenStore(ctx, db)
			if err != nil {
				return err
			}
			defer closeDB()
			tok, err := store.Revoke(ctx, args[0])
			if errors.Is(err, auth.ErrNotFound) {
				return fmt.Errorf("no token named %q (tasker token list shows them)", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %q at %s\n", tok.Name, tok.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	db.register(cmd)
	return cmd
}

func openTokenStore(ctx context.Context, f tokenDBFlags) (*auth.Store, func(), error) {
	db, err := f.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	return auth.NewStore(db), func() { _ = db.Close() }, nil
}

func printTokens(out io.Writer, toks []auth.Token, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPES\tNAMESPACES\tCREATED\tEXPIRES\tLAST USED\tSTATUS")
	for _, t := range toks {
		status := "active"
		switch {
		case !t.RevokedAt.IsZero():
			status = "revoked " + t.RevokedAt.Format(time.RFC3339)
		case !t.Usable(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, joinScopes(t.Scopes), strings.Join(t.Namespaces, ","),
			t.CreatedAt.Format(time.RFC3339), orDash(t.ExpiresAt), orDash(t.LastUsedAt), status)
	}
	return tw.Flush()
}

func orDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func expiryNote(t auth.Token) string {
	if t.ExpiresAt.IsZero() {
		return ", no expiry"
	}
	return ", expires " + t.ExpiresAt.Format(time.RFC3339)
}

func joinScopes(ss []auth.Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

func scopeList() string { return joinScopes(auth.Scopes) }
