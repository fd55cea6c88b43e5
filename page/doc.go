// Package page implements the list conventions of the contract: page sizes
// with a default and a bound, and opaque keyset page tokens.
//
// A token carries the sort key of the last item returned and a fingerprint
// of the request's filters, so a token is refused (InvalidArgument) when it
// is replayed with other filters instead of silently skipping or repeating
// items. Tokens are not secret or signed: a client that forges one only
// changes where its own listing resumes.
package page
