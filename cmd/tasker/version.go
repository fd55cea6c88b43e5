package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"
)

// versionInfo is what the binary knows of its own build.
type versionInfo struct {
	Version   string // module version, "(devel)" for a build from a checkout
	Revision  string // VCS commit, "" when built without VCS information
	Time      string // commit time, RFC 3339
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

// buildVersion reads the module and VCS information the Go toolchain
// stamps into every binary built from a module.
func buildVersion() versionInfo {
	v := versionInfo{Version: "(unknown)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v versionInfo) String() string {
	s := v.Version
	if v.Revision != "" {
		s += " (commit " + v.Revision
		if v.Modified {
			s += "+modified"
		}
		if v.Time != "" {
			s += ", " + v.Time
		}
		s += ")"
	}
	return s + " " + v.GoVersion
}

func versionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(output, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			v := buildVersion()
			if format == outputTable {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "tasker %s\n", v)
				return err
			}
			return printVersion(cmd.OutOrStdout(), v, format)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "table, json or yaml (default table on a terminal, json otherwise)")
	return cmd
}

func printVersion(w io.Writer, v versionInfo, format string) error {
	s, err := structpb.NewStruct(map[string]any{
		"version": v.Version, "revision": v.Revision, "time": v.Time,
		"modified": v.Modified, "goVersion": v.GoVersion,
	})
	if err != nil {
		return err
	}
	b, err := marshal(s, format)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
