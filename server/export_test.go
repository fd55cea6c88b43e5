package server

// RuleScopes returns the scope each RPC's rule requires, by full method
// name, for the tests that check the table against the contract.
func RuleScopes() map[string]string {
	out := make(map[string]string, len(rules))
	for m, r := range rules {
		out[m] = string(r.scope)
	}
	return out
}
