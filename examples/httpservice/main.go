// Command httpservice is a tiny HTTP service for the HTTP steps of
// examples/templates/http_checkout.yaml and for `tasker bench`'s HTTP
// scenario. It keeps everything in memory:
//
//	GET  /carts/{id}       a cart: {"id", "items": [{"sku", "qty", "price_cents"}]}
//	POST /charges          needs "Authorization: Bearer <token>" (--token); answers
//	                       {"id": "ch_<n>", "amount_cents"}; the same Idempotency-Key
//	                       gets the same charge
//	POST /webhooks/{name}  logs the body, answers 202
//	GET  /noop             answers {} (what the benchmark calls)
//
// Run it with:
//
//	go run ./examples/httpservice --addr 127.0.0.1:8088 --token demo-token
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8088", "listen address")
	token := flag.String("token", "demo-token", "bearer token /charges requires")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := &http.Server{Addr: *addr, Handler: newService(log, *token), ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving", slog.String("addr", *addr))
	if err := srv.ListenAndServe(); err != nil {
		log.Error("stopped", slog.Any("error", err))
		os.Exit(1)
	}
}

type service struct {
	log     *slog.Logger
	token   string
	mu      sync.Mutex
	charges map[string]map[string]any // by idempotency key
}

func newService(log *slog.Logger, token string) http.Handler {
	s := &service{log: log, token: token, charges: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /carts/{id}", s.cart)
	mux.HandleFunc("POST /charges", s.charge)
	mux.HandleFunc("POST /webhooks/{name}", s.webhook)
	mux.HandleFunc("GET /noop", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, map[string]any{}) })
	return mux
}

func (s *service) cart(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"id": r.PathValue("id"),
		"items": []map[string]any{
			{"sku": "tea-green", "qty": 2, "price_cents": 450},
			{"sku": "cup-blue", "qty": 1, "price_cents": 1200},
		},
	})
}

func (s *service) charge(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "bad token"})
		return
	}
	var req struct {
		CartID      string `json:"cart_id"`
		AmountCents int64  `json:"amount_cents"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.AmountCents <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "want {cart_id, amount_cents > 0}"})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	c, seen := s.charges[key]
	if !seen || key == "" {
		c = map[string]any{"id": fmt.Sprintf("ch_%d", len(s.charges)+1), "cart_id": req.CartID, "amount_cents": req.AmountCents}
		s.charges[key] = c
	}
	s.mu.Unlock()
	s.log.InfoContext(r.Context(), "charge", slog.Any("charge", c), slog.Bool("repeat", seen))
	writeJSON(w, http.StatusCreated, c)
}

func (s *service) webhook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	s.log.InfoContext(r.Context(), "webhook", slog.String("name", r.PathValue("name")), slog.String("body", string(body)))
	writeJSON(w, http.StatusAccepted, map[string]any{"received": true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
