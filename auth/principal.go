package auth

import (
	"context"
	"slices"
)

// Principal is the authenticated caller: a token's name and what it holds.
type Principal struct {
	// Name is the token's name, safe to log.
	Name       string
	scopes     []Scope
	namespaces []string
}

// NewPrincipal returns the principal holding scopes on namespaces.
func NewPrincipal(name string, scopes []Scope, namespaces []string) *Principal {
	return &Principal{Name: name, scopes: slices.Clone(scopes), namespaces: slices.Clone(namespaces)}
}

// Has reports whether p holds scope, directly or through Admin.
func (p *Principal) Has(scope Scope) bool {
	return slices.Contains(p.scopes, Admin) || slices.Contains(p.scopes, scope)
}

// AllNamespaces reports whether p may act on every namespace.
func (p *Principal) AllNamespaces() bool {
	return slices.Contains(p.scopes, Admin) || slices.Contains(p.namespaces, AllNamespaces)
}

// Allows reports whether p may act on namespace ns.
func (p *Principal) Allows(ns string) bool {
	return p.AllNamespaces() || slices.Contains(p.namespaces, ns)
}

// Namespaces returns the namespaces p is limited to; nil when it may act on
// every namespace.
func (p *Principal) Namespaces() []string {
	if p.AllNamespaces() {
		return nil
	}
	return slices.Clone(p.namespaces)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx, or nil when the call was not
// authenticated (authentication is off).
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
