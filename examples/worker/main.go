// Command worker is an example Tasker worker built on the Go SDK
// (github.com/taskerhq/tasker/worker). It serves every handler the
// templates in examples/templates use: demo_echo and demo_sleep in the
// demo namespace, and fetch_cart, fetch_products, validate_products,
// create_order and publish_event in the ecommerce namespace, and
// price_order in the checkout namespace (http_checkout.yaml, whose HTTP
// steps the server runs itself).
//
// Run a server with the example templates, this worker, and a task:
//
//	go run ./cmd/tasker serve --templates examples/templates
//	go run ./examples/worker --addr 127.0.0.1:50051
//	grpcurl -plaintext -d '{"namespace": "ecommerce", "name": "order_fulfillment",
//	  "context": {"cart_id": "cart-42", "customer_id": "c-7"}}' \
//	  127.0.0.1:50051 tasker.v1.TaskService/CreateTask
//	grpcurl -plaintext -d '{"id": "<task id>"}' 127.0.0.1:50051 tasker.v1.TaskService/GetTask
//
// The demo template needs no context:
//
//	grpcurl -plaintext -d '{"namespace": "demo", "name": "diamond"}' \
//	  127.0.0.1:50051 tasker.v1.TaskService/CreateTask
//
// The worker logs JSON to stderr and stops gracefully on SIGINT or SIGTERM:
// running steps get --shutdown-timeout to finish, the rest are given back
// to the server unrun.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/taskerhq/tasker/worker"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("worker failed", slog.Any("error", err))
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	host, _ := os.Hostname()
	addr := flag.String("addr", "127.0.0.1:50051", "Tasker server address")
	id := flag.String("id", fmt.Sprintf("example-%s-%d", host, os.Getpid()), "worker id shown by ListHandlers")
	concurrency := flag.Int("concurrency", 10, "steps run at once")
	shutdownTimeout := flag.Duration("shutdown-timeout", 30*time.Second, "how long running steps may finish on shutdown")
	flag.Parse()

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	defer conn.Close()

	w := worker.New(conn, *id, worker.Options{
		Concurrency:     *concurrency,
		ShutdownTimeout: *shutdownTimeout,
		Logger:          log,
	})
	h := &handlers{log: log}
	w.MustRegister("demo", "demo_echo", h.echo)
	w.MustRegister("demo", "demo_sleep", h.sleep)
	w.MustRegister("ecommerce", "fetch_cart", h.fetchCart)
	w.MustRegister("ecommerce", "fetch_products", h.fetchProducts)
	w.MustRegister("ecommerce", "validate_products", h.validateProducts)
	w.MustRegister("ecommerce", "create_order", h.createOrder)
	w.MustRegister("ecommerce", "publish_event", h.publishEvent)
	w.MustRegister("checkout", "price_order", h.priceOrder)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("worker connecting", slog.String("addr", *addr), slog.String("worker_id", *id))
	return w.Run(ctx)
}

// handlers holds the example handlers; a real worker would hold its
// database, HTTP clients and so on here.
type handlers struct {
	log *slog.Logger
}

// echo returns its config and what its parents returned.
func (h *handlers) echo(ctx context.Context, s *worker.Step) (map[string]any, error) {
	parents := map[string]any{}
	for _, name := range s.ParentNames() {
		r, err := s.Parent(ctx, name)
		if err != nil {
			return nil, err
		}
		parents[name] = r
	}
	return map[string]any{
		"message": s.Config["message"],
		"step":    s.Name,
		"attempt": s.Attempt,
		"parents": parents,
	}, nil
}

// sleep waits config.duration_ms, or less when its context ends.
func (h *handlers) sleep(ctx context.Context, s *worker.Step) (map[string]any, error) {
	ms, _ := s.Config["duration_ms"].(float64)
	if ms < 0 || ms > float64(time.Hour/time.Millisecond) {
		return nil, worker.NonRetryable(worker.WithErrorType(fmt.Errorf("duration_ms %v is out of range", ms), "bad_config"))
	}
	start := time.Now()
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return map[string]any{"slept_ms": time.Since(start).Milliseconds()}, nil
}

// product is a catalogue entry.
type product struct {
	SKU   string  `json:"sku"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
	Stock int     `json:"stock"`
}

// catalogue stands in for the product service.
var catalogue = []product{
	{SKU: "mug-blue", Name: "Blue mug", Price: 12.5, Stock: 40},
	{SKU: "tea-earl", Name: "Earl Grey, 100g", Price: 7.9, Stock: 120},
	{SKU: "teapot-1l", Name: "Teapot, 1 l", Price: 34, Stock: 6},
	{SKU: "coaster-4", Name: "Coasters, set of 4", Price: 9.5, Stock: 0},
}

// fetchCart builds the cart from the task context: its items when the
// caller sent them ([{"sku": ..., "quantity": ...}]), otherwise a cart the
// cart id always yields the same way, as a cart service would.
func (h *handlers) fetchCart(_ context.Context, s *worker.Step) (map[string]any, error) {
	cartID, _ := s.Context["cart_id"].(string)
	if cartID == "" {
		return nil, worker.NonRetryable(worker.WithErrorType(errors.New("context.cart_id is required"), "bad_context"))
	}
	items, ok := s.Context["items"].([]any)
	if !ok {
		hash := fnv.New32a()
		_, _ = hash.Write([]byte(cartID))
		n := hash.Sum32()
		items = []any{
			map[string]any{"sku": "mug-blue", "quantity": float64(1 + n%3)},
			map[string]any{"sku": "tea-earl", "quantity": float64(1 + n%2)},
		}
		if n%4 == 0 {
			items = append(items, map[string]any{"sku": "teapot-1l", "quantity": float64(1)})
		}
	}
	prices := map[string]float64{}
	for _, p := range catalogue {
		prices[p.SKU] = p.Price
	}
	lines := make([]any, 0, len(items))
	for i, it := range items {
		m, _ := it.(map[string]any)
		sku, _ := m["sku"].(string)
		qty, _ := m["quantity"].(float64)
		if sku == "" || qty < 1 {
			return nil, worker.NonRetryable(worker.WithErrorType(fmt.Errorf("context.items[%d] needs a sku and a quantity >= 1", i), "bad_context"))
		}
		// The cart remembers the price the customer saw.
		lines = append(lines, map[string]any{"sku": sku, "quantity": qty, "unit_price": prices[sku]})
	}
	return map[string]any{"cart_id": cartID, "customer_id": s.Context["customer_id"], "items": lines}, nil
}

// fetchProducts loads the catalogue's prices and stock.
func (h *handlers) fetchProducts(_ context.Context, _ *worker.Step) (map[string]any, error) {
	products := map[string]any{}
	for _, p := range catalogue {
		products[p.SKU] = p // encoded as JSON by the SDK
	}
	return map[string]any{"products": products, "fetched_at": time.Now().UTC().Format(time.RFC3339)}, nil
}

// validateProducts checks every cart line against the catalogue: known,
// in stock, priced as in the cart. A failure is retried once (the
// template's policy) in case the catalogue read was stale.
func (h *handlers) validateProducts(ctx context.Context, s *worker.Step) (map[string]any, error) {
	cart, err := s.Parent(ctx, "fetch_cart")
	if err != nil {
		return nil, err
	}
	catalog, err := s.Parent(ctx, "fetch_products")
	if err != nil {
		return nil, err
	}
	products, _ := catalog["products"].(map[string]any)
	items, _ := cart["items"].([]any)
	var problems []string
	subtotal := 0.0
	for _, it := range items {
		line, _ := it.(map[string]any)
		sku, _ := line["sku"].(string)
		qty, _ := line["quantity"].(float64)
		price, _ := line["unit_price"].(float64)
		p, ok := products[sku].(map[string]any)
		if !ok {
			problems = append(problems, sku+": unknown product")
			continue
		}
		stock, _ := p["stock"].(float64)
		current, _ := p["price"].(float64)
		switch {
		case stock < qty:
			problems = append(problems, fmt.Sprintf("%s: %v in stock, %v wanted", sku, stock, qty))
		case current != price:
			problems = append(problems, fmt.Sprintf("%s: price changed from %v to %v", sku, price, current))
		}
		subtotal += qty * price
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, worker.WithErrorType(fmt.Errorf("cart %v cannot be ordered: %v", cart["cart_id"], problems), "validation_failed")
	}
	return map[string]any{"valid": true, "items": items, "subtotal": round(subtotal)}, nil
}

// vatRate is the example's flat sales tax.
const vatRate = 0.2

// createOrder turns the validated cart into an order with totals.
func (h *handlers) createOrder(ctx context.Context, s *worker.Step) (map[string]any, error) {
	valid, err := s.Parent(ctx, "validate_products")
	if err != nil {
		return nil, err
	}
	subtotal, _ := valid["subtotal"].(float64)
	tax := round(subtotal * vatRate)
	reserve, _ := s.Config["reserve_stock"].(bool)
	// Derived from the task id, so a retried attempt creates the same order
	// instead of a second one.
	orderID := "ord-" + s.TaskID[len(s.TaskID)-12:]
	h.log.InfoContext(ctx, "order created", slog.String("order_id", orderID), slog.String("correlation_id", s.CorrelationID))
	return map[string]any{
		"order_id":       orderID,
		"customer_id":    s.Context["customer_id"],
		"currency":       s.Config["currency"],
		"items":          valid["items"],
		"subtotal":       subtotal,
		"tax":            tax,
		"total":          round(subtotal + tax),
		"stock_reserved": reserve,
	}, nil
}

// publishEvent announces the order on the configured topic; here the
// "message bus" is the log.
func (h *handlers) publishEvent(ctx context.Context, s *worker.Step) (map[string]any, error) {
	order, err := s.Parent(ctx, "create_order")
	if err != nil {
		return nil, err
	}
	topic, _ := s.Config["topic"].(string)
	if topic == "" {
		return nil, worker.NonRetryable(worker.WithErrorType(errors.New("config.topic is required"), "bad_config"))
	}
	eventID := fmt.Sprintf("%s-%s", order["order_id"], s.ID[len(s.ID)-8:])
	h.log.InfoContext(ctx, "event published", slog.String("topic", topic), slog.String("event_id", eventID),
		slog.Any("order_id", order["order_id"]), slog.Any("total", order["total"]), slog.String("correlation_id", s.CorrelationID))
	return map[string]any{"topic": topic, "event_id": eventID, "published_at": time.Now().UTC().Format(time.RFC3339Nano)}, nil
}

// round rounds money to cents.
func round(v float64) float64 { return math.Round(v*100) / 100 }

// priceOrder totals the cart the http step fetch_cart read, with 20% tax:
// a worker step between two HTTP steps (http_checkout.yaml).
func (h *handlers) priceOrder(ctx context.Context, s *worker.Step) (map[string]any, error) {
	cart, err := s.Parent(ctx, "fetch_cart")
	if err != nil {
		return nil, err
	}
	items, _ := cart["items"].([]any)
	var net float64
	for _, it := range items {
		item, _ := it.(map[string]any)
		qty, _ := item["qty"].(float64)
		price, _ := item["price_cents"].(float64)
		net += qty * price
	}
	if net <= 0 {
		return nil, worker.NonRetryable(fmt.Errorf("cart %v has nothing to pay", cart["cart_id"]))
	}
	return map[string]any{"net_cents": net, "total_cents": math.Round(net * 1.2)}, nil
}
