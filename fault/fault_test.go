package fault

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestAsThroughWrapping(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("register: %w", Invalid("template.name", "must not be empty"))
	fe, ok := As(err)
	require.True(t, ok)
	require.Equal(t, InvalidArgument, fe.Code)
	require.Equal(t, []Violation{{Field: "template.name", Description: "must not be empty"}}, fe.Violations)
	require.Equal(t, InvalidArgument, CodeOf(err))
	require.Equal(t, Code(0), CodeOf(fmt.Errorf("plain")))
}

func TestInvalidStateCarriesCurrentState(t *testing.T) {
	t.Parallel()
	fe := InvalidState("task", "t1", "complete", "cannot cancel")
	require.Equal(t, FailedPrecondition, fe.Code)
	require.Equal(t, ReasonInvalidState, fe.Reason)
	require.Equal(t, "complete", fe.Metadata["current_state"])
	require.Contains(t, fe.Error(), "task t1 is complete: cannot cancel")
}

func TestInvalidsJoinsMessages(t *testing.T) {
	t.Parallel()
	fe := Invalids([]Violation{{"a", "bad"}, {"b", "worse"}})
	require.Equal(t, "invalid argument: a: bad; b: worse", fe.Error())
	require.Panics(t, func() { _ = Invalids(nil) })
}

func TestClipCutsOnARuneBoundary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", Clip("short"))
	long := strings.Repeat("é", 30) // 60 bytes
	got := Clip(long)
	require.Equal(t, strings.Repeat("é", 20)+"…", got)
	require.True(t, utf8.ValidString(got))
}

// FuzzClip: Clip keeps valid UTF-8 valid, never returns more than
// MaxQuoted bytes and the mark, and leaves short strings alone.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "short", strings.Repeat("é", 30), strings.Repeat("x", 41)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Clip(s)
		if len(s) <= MaxQuoted {
			require.Equal(t, s, got)
			return
		}
		require.LessOrEqual(t, len(got), MaxQuoted+len("…"))
		require.True(t, strings.HasSuffix(got, "…"))
		if utf8.ValidString(s) {
			require.True(t, utf8.ValidString(got))
		}
	})
}
