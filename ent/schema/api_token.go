package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// APIToken is a bearer token for the API. Only a hash of the secret is
// stored: the secret is shown once, when the token is created, and a
// database dump reveals no usable token.
type APIToken struct {
	ent.Schema
}

// Fields of the APIToken.
func (APIToken) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Immutable().
			Comment("the operator's name for the token, used to list and revoke it"),
		field.String("hash").NotEmpty().Unique().Immutable().Sensitive().
			Comment("hex SHA-256 of the secret; the secret has 256 random bits, so no slow hash is needed"),
		field.JSON("scopes", []string{}).
			Comment("resource:action scopes, or admin"),
		field.JSON("namespaces", []string{}).
			Comment("the namespaces the token may act on; [\"*\"] for every namespace"),
		createdAt(),
		field.Time("expires_at").Optional().Nillable().Immutable(),
		field.Time("revoked_at").Optional().Nillable(),
		field.Time("last_used_at").Optional().Nillable().
			Comment("updated at most once a minute per token, best-effort"),
	}
}
