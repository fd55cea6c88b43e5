package page

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/taskerhq/tasker/fault"
)

// maxTokenLen bounds what Decode reads, so a hostile token costs nothing.
const maxTokenLen = 2048

// Size returns the page size to use: def when requested is 0, requested
// when it is within 1..max, and an InvalidArgument naming field otherwise.
func Size(field string, requested int32, def, max int) (int, error) {
	switch {
	case requested == 0:
		return def, nil
	case requested < 0 || int(requested) > max:
		return 0, fault.Invalid(field, "must be between 1 and %d, got %d", max, requested)
	default:
		return int(requested), nil
	}
}

// Fingerprint hashes the filter values that a token must be replayed with.
// Callers pass the filters in a fixed order.
func Fingerprint(filters ...any) string {
	b, err := json.Marshal(filters)
	if err != nil {
		// Filters are plain values built by the caller; failing to marshal
		// them is a programming error.
		panic(fmt.Sprintf("page.Fingerprint: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

type token struct {
	Filter string          `json:"f"`
	After  json.RawMessage `json:"a"`
}

// Encode makes the token that resumes after the item whose sort key is
// after.
func Encode(fingerprint string, after any) string {
	a, err := json.Marshal(after)
	if err != nil {
		panic(fmt.Sprintf("page.Encode: %v", err))
	}
	b, err := json.Marshal(token{Filter: fingerprint, After: a})
	if err != nil {
		panic(fmt.Sprintf("page.Encode: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode reads a token made by Encode into after. An empty token leaves
// after untouched and reports false. A token that is malformed or was
// issued for other filters is an InvalidArgument naming field.
func Decode(field, tok, fingerprint string, after any) (bool, error) {
	if tok == "" {
		return false, nil
	}
	if len(tok) > maxTokenLen {
		return false, fault.Invalid(field, "is not a page token of this listing")
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return false, fault.Invalid(field, "is not a page token of this listing")
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil || len(t.After) == 0 {
		return false, fault.Invalid(field, "is not a page token of this listing")
	}
	if t.Filter != fingerprint {
		return false, fault.Invalid(field, "was issued for different filters; start again without it")
	}
	if err := json.Unmarshal(t.After, after); err != nil {
		return false, fault.Invalid(field, "is not a page token of this listing")
	}
	return true, nil
}
