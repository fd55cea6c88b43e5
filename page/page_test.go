package page

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/fault"
)

type cursor struct {
	Name string `json:"n"`
	ID   int    `json:"i"`
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	fp := Fingerprint("ns", []string{"a"})
	tok := Encode(fp, cursor{Name: "x", ID: 7})
	var got cursor
	ok, err := Decode("page_token", tok, fp, &got)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, cursor{Name: "x", ID: 7}, got)
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	fp := Fingerprint("ns")
	good := Encode(fp, cursor{Name: "x"})
	for name, tok := range map[string]string{
		"not base64":    "!!!",
		"not json":      "bm90IGpzb24",
		"other filters": Encode(Fingerprint("other"), cursor{Name: "x"}),
		"wrong shape":   Encode(fp, []int{1, 2}),
		"too long":      good + string(make([]byte, maxTokenLen)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var c cursor
			_, err := Decode("page_token", tok, fp, &c)
			fe, ok := fault.As(err)
			require.True(t, ok, "error %v", err)
			require.Equal(t, fault.InvalidArgument, fe.Code)
			require.Equal(t, "page_token", fe.Violations[0].Field)
		})
	}
	var c cursor
	ok, err := Decode("page_token", "", fp, &c)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      int32
		want    int
		wantErr bool
	}{{0, 50, false}, {1, 1, false}, {500, 500, false}, {501, 0, true}, {-1, 0, true}} {
		got, err := Size("page_size", tc.in, 50, 500)
		if tc.wantErr {
			require.Equal(t, fault.InvalidArgument, fault.CodeOf(err), "size %d", tc.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}

func FuzzDecode(f *testing.F) {
	fp := Fingerprint("ns")
	f.Add(Encode(fp, cursor{Name: "x", ID: 1}))
	f.Add("")
	f.Add("e30")
	f.Fuzz(func(t *testing.T, tok string) {
		var c cursor
		ok, err := Decode("page_token", tok, fp, &c)
		if err != nil {
			require.Equal(t, fault.InvalidArgument, fault.CodeOf(err))
			require.False(t, ok)
		}
	})
}
