package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/apitoken"
	"github.com/taskerhq/tasker/storage"
)

// secretPrefix marks Tasker tokens, so secret scanners and people can tell
// them apart from other credentials.
const secretPrefix = "tasker_"

var (
	// nameRE is the rule for token names: short, printable, safe to log.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	// namespaceRE is the registry's rule for namespace names.
	namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
)

// ErrNotFound is returned for a token name that does not exist.
var ErrNotFound = errors.New("no such token")

// Token describes a stored token; it never holds the secret.
type Token struct {
	Name       string
	Scopes     []Scope
	Namespaces []string
	CreatedAt  time.Time
	// ExpiresAt, RevokedAt and LastUsedAt are zero when unset.
	ExpiresAt  time.Time
	RevokedAt  time.Time
	LastUsedAt time.Time
}

// Usable reports whether t authenticates calls at now.
func (t Token) Usable(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// CreateParams are the settings of a new token.
type CreateParams struct {
	Name       string
	Scopes     []Scope
	Namespaces []string
	// ExpiresIn, when positive, is the token's lifetime; zero never expires.
	ExpiresIn time.Duration
}

// Store keeps the tokens in the database.
type Store struct {
	db  *storage.DB
	now func() time.Time
}

// NewStore returns the token store of db.
func NewStore(db *storage.DB) *Store {
	return &Store{db: db, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

func (p CreateParams) validate() error {
	if !nameRE.MatchString(p.Name) {
		return fmt.Errorf("name %q: want 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", cut(p.Name))
	}
	if len(p.Scopes) == 0 {
		return errors.New("scopes: give at least one")
	}
	for _, s := range p.Scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("scopes: unknown scope %q", cut(string(s)))
		}
	}
	if len(p.Namespaces) == 0 {
		return errors.New("namespaces: give at least one, or '*' for every namespace")
	}
	for _, ns := range p.Namespaces {
		if ns != AllNamespaces && !namespaceRE.MatchString(ns) {
			return fmt.Errorf("namespaces: %q is not a namespace name (lower case letters, digits, '_', '.', '-') nor '*'", cut(ns))
		}
	}
	if p.ExpiresIn < 0 {
		return errors.New("expires: want a positive duration, or 0 for no expiry")
	}
	return nil
}

// Create stores a new token and returns its secret, which is never
// retrievable again.
func (s *Store) Create(ctx context.Context, p CreateParams) (string, Token, error) {
	if err := p.validate(); err != nil {
		return "", Token{}, err
	}
	secret := newSecret()
	now := s.now()
	create := s.db.Client.APIToken.Create().
		SetName(p.Name).SetHash(hashSecret(secret)).
		SetScopes(scopeStrings(p.Scopes)).SetNamespaces(p.Namespaces).
		SetCreatedAt(now)
	if p.ExpiresIn > 0 {
		create.SetExpiresAt(now.Add(p.ExpiresIn))
	}
	row, err := create.Save(ctx)
	if ent.IsConstraintError(err) {
		return "", Token{}, fmt.Errorf("a token named %q already exists", p.Name)
	}
	if err != nil {
		return "", Token{}, err
	}
	return secret, tokenOf(row), nil
}

// List returns every token, revoked and expired ones included, by name.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.db.Reader.APIToken.Query().Order(ent.Asc(apitoken.FieldName)).All(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Token, len(rows))
	for i, r := range rows {
		out[i] = tokenOf(r)
	}
	return out, nil
}

// Revoke revokes the token named name at once in the database; servers
// stop accepting it when their cached lookup expires. Revoking a revoked
// token changes nothing.
func (s *Store) Revoke(ctx context.Context, name string) (Token, error) {
	err := s.db.Client.APIToken.Update().
		Where(apitoken.Name(name), apitoken.RevokedAtIsNil()).
		SetRevokedAt(s.now()).Exec(ctx)
	if err != nil {
		return Token{}, err
	}
	row, err := s.db.Client.APIToken.Query().Where(apitoken.Name(name)).Only(ctx)
	if ent.IsNotFound(err) {
		return Token{}, fmt.Errorf("token %q: %w", cut(name), ErrNotFound)
	}
	if err != nil {
		return Token{}, err
	}
	return tokenOf(row), nil
}

// lookup returns the stored token whose secret is secret, or ErrNotFound.
func (s *Store) lookup(ctx context.Context, secret string) (Token, error) {
	row, err := s.db.Reader.APIToken.Query().Where(apitoken.Hash(hashSecret(secret))).Only(ctx)
	if ent.IsNotFound(err) {
		return Token{}, ErrNotFound
	}
	if err != nil {
		return Token{}, err
	}
	return tokenOf(row), nil
}

// touch records that the token was used, at most once a minute so a busy
// token does not turn every lookup into a write.
func (s *Store) touch(ctx context.Context, name string, now time.Time) error {
	return s.db.Client.APIToken.Update().
		Where(apitoken.Name(name), apitoken.Or(apitoken.LastUsedAtIsNil(), apitoken.LastUsedAtLT(now.Add(-time.Minute)))).
		SetLastUsedAt(now).Exec(ctx)
}

func tokenOf(r *ent.APIToken) Token {
	t := Token{Name: r.Name, Namespaces: r.Namespaces, CreatedAt: r.CreatedAt}
	for _, s := range r.Scopes {
		t.Scopes = append(t.Scopes, Scope(s))
	}
	if r.ExpiresAt != nil {
		t.ExpiresAt = *r.ExpiresAt
	}
	if r.RevokedAt != nil {
		t.RevokedAt = *r.RevokedAt
	}
	if r.LastUsedAt != nil {
		t.LastUsedAt = *r.LastUsedAt
	}
	return t
}

func scopeStrings(ss []Scope) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// newSecret returns a new secret of 256 random bits.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return secretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is what the database stores. A plain SHA-256 is enough: the
// secret is random with 256 bits, so there is no dictionary to try.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// plausible reports whether secret could be a token at all, so garbage is
// refused without a database lookup.
func plausible(secret string) bool {
	return strings.HasPrefix(secret, secretPrefix) && len(secret) == len(secretPrefix)+43
}
