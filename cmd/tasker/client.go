package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/taskerhq/tasker/correlation"
)

// Output formats of the client commands.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// clientFlags are the flags every command that calls a server shares.
type clientFlags struct {
	addr          string
	conn          connFlags
	output        string
	correlationID string
}

func (c *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&c.addr, "addr", env("TASKER_ADDR", "127.0.0.1:50051"), "server address [TASKER_ADDR]")
	c.conn.register(cmd)
	fl.StringVarP(&c.output, "output", "o", "", "table, json or yaml (default table on a terminal, json otherwise)")
	fl.StringVar(&c.correlationID, "correlation-id", "", "correlation id sent with the call (default a new one, shown on errors)")
}

// client is one command's connection to the server and where its output
// goes.
type client struct {
	conn   *grpc.ClientConn
	out    io.Writer
	errOut io.Writer
	format string
	// correlationID is sent on every call, so an error can name it even
	// when the server never answered.
	correlationID string
}

// clientCommand builds a command that dials the server and calls run. The
// flags are checked before dialling, so a usage error never waits on the
// network.
func clientCommand(cmd *cobra.Command, run func(ctx context.Context, c *client, args []string) error) *cobra.Command {
	var f clientFlags
	f.register(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		format, err := outputFormat(f.output, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		id := f.correlationID
		if id == "" {
			id = correlation.New()
		} else if !correlation.Valid(id) {
			return usageErrorf("--correlation-id: %q is not a valid correlation id", id)
		}
		conn, err := dial(f.addr, f.conn)
		if err != nil {
			return err
		}
		defer conn.Close()
		c := &client{conn: conn, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), format: format, correlationID: id}
		ctx := metadata.AppendToOutgoingContext(cmd.Context(), correlation.Header, id)
		if err := run(ctx, c, args); err != nil {
			return withCorrelation(err, id)
		}
		return nil
	}
	return cmd
}

// outputFormat resolves --output: table for a person at a terminal, JSON
// for a script reading a pipe.
func outputFormat(flag string, out io.Writer) (string, error) {
	switch flag {
	case outputTable, outputJSON, outputYAML:
		return flag, nil
	case "":
		if f, ok := out.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
			return outputTable, nil
		}
		return outputJSON, nil
	default:
		return "", usageErrorf("--output: want table, json or yaml, got %q", flag)
	}
}

// print writes m as JSON or YAML, or calls table to draw it for a person.
func (c *client) print(m proto.Message, table func(w io.Writer)) error {
	switch c.format {
	case outputTable:
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	default:
		b, err := marshal(m, c.format)
		if err != nil {
			return err
		}
		_, err = c.out.Write(b)
		return err
	}
}

// marshal renders m as indented JSON (protojson's field names, re-indented
// because protojson's own spacing is deliberately unstable) or as YAML.
func marshal(m proto.Message, format string) ([]byte, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	if format == outputYAML {
		return yaml.JSONToYAML(raw)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// nextPage tells a person at a table how to get the rest; scripts read
// next_page_token from the JSON.
func (c *client) nextPage(token string) {
	if token != "" && c.format == outputTable {
		fmt.Fprintf(c.errOut, "more: --page-token %s\n", token)
	}
}

// stamp formats a time for tables: UTC, to the second, "-" when unset.
func stamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// enumName is an enum value without its type prefix, lower-cased:
// TASK_STATE_IN_PROGRESS is in_progress.
func enumName(v fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), prefix))
}

// dash shows an empty string as "-" so table columns stay aligned.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readJSONArg reads a JSON argument given inline, as @file or as "-" for
// stdin.
func readJSONArg(flag, v string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	switch {
	case v == "-":
		data, err = io.ReadAll(stdin)
	case strings.HasPrefix(v, "@"):
		data, err = os.ReadFile(v[1:])
	default:
		data = []byte(v)
	}
	if err != nil {
		return nil, usageErrorf("%s: %v", flag, err)
	}
	return data, nil
}

// parseStruct reads a JSON object for flag. encoding/json checks it first:
// its messages are stable and name the offset, protojson's are neither.
func parseStruct(flag string, data []byte) (*structpb.Struct, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, usageErrorf("%s: want a JSON object: %v", flag, err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(data, s); err != nil {
		return nil, usageErrorf("%s: want a JSON object: %v", flag, err)
	}
	return s, nil
}

// errorsAs is errors.As for a pointer target type.
func errorsAs[T any](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}

// compactJSON removes protojson's unstable spacing.
func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}
