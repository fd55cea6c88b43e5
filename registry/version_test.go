package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLatest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		versions []string
		want     string
	}{
		{"none", nil, ""},
		{"one", []string{"1.0.0"}, "1.0.0"},
		{"numeric not lexical", []string{"1.9.0", "1.10.0", "1.2.0"}, "1.10.0"},
		{"release beats newer pre-release", []string{"1.0.0", "2.0.0-rc.1"}, "1.0.0"},
		{"release beats its own pre-release", []string{"2.0.0-rc.1", "2.0.0"}, "2.0.0"},
		{"only pre-releases: highest", []string{"2.0.0-alpha", "2.0.0-rc.1", "2.0.0-beta.2", "1.0.0-rc.9"}, "2.0.0-rc.1"},
		{"pre-release numeric identifiers", []string{"1.0.0-rc.2", "1.0.0-rc.10"}, "1.0.0-rc.10"},
		{"build metadata ranks equal; greater string wins", []string{"1.0.0+b", "1.0.0+a"}, "1.0.0+b"},
		{"build metadata in either order", []string{"1.0.0+a", "1.0.0+b"}, "1.0.0+b"},
		{"not semver skipped", []string{"v3.0.0", "latest", "0.1.0"}, "0.1.0"},
		{"nothing valid", []string{"v1", ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Latest(tc.versions)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want != "", ok)
		})
	}
}
