package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestOpenAPIRoutesAnswer reads the OpenAPI document the admin port serves
// and calls every route it documents: each answers with one of its
// documented statuses (TestAdminRoutesDocumented checks the converse).
func TestOpenAPIRoutesAnswer(t *testing.T) {
	t.Parallel()
	srv := servertest.Start(t, storagetest.Open(t, "sqlite"), servertest.Options{Admin: true})
	get := func(path string) (int, []byte) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+srv.AdminAddr+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, body
	}
	code, body := get("/openapi.json")
	require.Equal(t, http.StatusOK, code)
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.NotEmpty(t, doc.Paths)
	for path, ops := range doc.Paths {
		code, body := get(path)
		_, ok := ops["get"].Responses[strconv.Itoa(code)]
		require.True(t, ok, "GET %s answered %d (%s), which the document does not list", path, code, body)
	}
	code, _ = get("/undocumented")
	require.Equal(t, http.StatusNotFound, code)
}
