package server

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 description of the admin endpoints, served at
// /openapi.json. TestAdminRoutesMatchOpenAPI checks that it documents
// every route of adminRoutes and that each documented route answers.
//
//go:embed openapi.json
var openAPI []byte

// adminRoute is one endpoint of the admin port: a GET of path.
type adminRoute struct {
	path    string
	handler http.HandlerFunc
}

// adminRoutes are every endpoint of the admin port. /healthz, /readyz and
// /openapi.json reveal no data and so need no token; /metrics does, and
// checks one (serveMetrics). An endpoint added here that reveals data
// must check one too, and openapi.json must describe it.
func (s *Server) adminRoutes() []adminRoute {
	return []adminRoute{
		{"/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }},
		{"/readyz", s.readyz},
		{"/metrics", s.serveMetrics},
		{"/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(openAPI)
		}},
	}
}
