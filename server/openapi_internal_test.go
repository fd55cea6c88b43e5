package server

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdminRoutesDocumented: the OpenAPI document describes exactly the
// routes the admin mux serves (TestOpenAPIRoutesAnswer calls each).
func TestAdminRoutesDocumented(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	require.Regexp(t, `^3\.`, doc.OpenAPI)
	var served, documented []string
	for _, r := range (&Server{}).adminRoutes() {
		served = append(served, r.path)
	}
	for p, ops := range doc.Paths {
		documented = append(documented, p)
		require.Equal(t, []string{"get"}, slices.Collect(func(yield func(string) bool) {
			for m := range ops {
				if !yield(m) {
					return
				}
			}
		}), "%s: the mux serves GET only", p)
	}
	slices.Sort(served)
	slices.Sort(documented)
	require.Equal(t, served, documented, "every admin route is documented, and only those")
}
