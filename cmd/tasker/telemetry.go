package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// setupTracing builds the trace provider serve's spans go to, from the
// standard OTEL_* environment: OTEL_TRACES_EXPORTER picks the exporter
// (otlp, console or none; none when unset, so a bare serve sends nothing
// anywhere), OTEL_EXPORTER_OTLP_* configure OTLP (protocol, endpoint,
// headers), OTEL_TRACES_SAMPLER* the sampler (samplerFromEnv: the root
// spans of workers' polls and reports are dropped) and OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES the resource. shutdown flushes the spans still
// buffered; serve calls it after the server stopped.
func setupTracing(ctx context.Context, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	if v := os.Getenv("OTEL_SDK_DISABLED"); strings.EqualFold(v, "true") {
		return noop.NewTracerProvider(), none, nil
	}
	exporter, err := autoexport.NewSpanExporter(ctx, autoexport.WithFallbackSpanExporter(
		func(context.Context) (sdktrace.SpanExporter, error) { return nil, nil }))
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: %w; want otlp, console or none", os.Getenv("OTEL_TRACES_EXPORTER"), err)
	}
	if exporter == nil || autoexport.IsNoneSpanExporter(exporter) {
		if exporter == nil && (os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
			log.WarnContext(ctx, "an OTLP endpoint is set but OTEL_TRACES_EXPORTER is not: no traces are sent; set OTEL_TRACES_EXPORTER=otlp")
		}
		return noop.NewTracerProvider(), none, nil
	}
	// The environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) wins
	// over the default service name.
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName("tasker")),
		resource.Environment(),
	)
	if err != nil {
		log.WarnContext(ctx, "OTEL_RESOURCE_ATTRIBUTES", slog.Any("error", err))
	}
	sampler, err := samplerFromEnv()
	if err != nil {
		_ = exporter.Shutdown(ctx)
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res), sdktrace.WithSampler(sampler))
	// Incoming W3C trace context (and baggage) continues the caller's
	// trace.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	log.InfoContext(ctx, "exporting traces", slog.String("exporter", os.Getenv("OTEL_TRACES_EXPORTER")))
	return tp, tp.Shutdown, nil
}

// setupMetrics builds the extra reader serve's instruments go to besides
// /metrics, from OTEL_METRICS_EXPORTER: otlp (configured by
// OTEL_EXPORTER_OTLP_*, exported every OTEL_METRIC_EXPORT_INTERVAL), console
// or none, the default. prometheus is refused: the admin port's /metrics
// already serves that format. shutdown exports what is left; serve calls it
// after the server stopped. A nil reader means none.
func setupMetrics(ctx context.Context, log *slog.Logger) (sdkmetric.Reader, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, none, nil
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_METRICS_EXPORTER")), "prometheus") {
		return nil, nil, fmt.Errorf("OTEL_METRICS_EXPORTER=prometheus: the admin port serves /metrics already; want otlp, console or none")
	}
	reader, err := autoexport.NewMetricReader(ctx, autoexport.WithFallbackMetricReader(
		func(context.Context) (sdkmetric.Reader, error) { return nil, nil }))
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: %w; want otlp, console or none", os.Getenv("OTEL_METRICS_EXPORTER"), err)
	}
	if reader == nil || autoexport.IsNoneMetricReader(reader) {
		return nil, none, nil
	}
	log.InfoContext(ctx, "exporting metrics", slog.String("exporter", os.Getenv("OTEL_METRICS_EXPORTER")))
	return reader, reader.Shutdown, nil
}
