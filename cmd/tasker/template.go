package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
)

func templateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Manage task templates: validate offline, compare, register, list and show"}
	cmd.AddCommand(templateApplyCommand(), templateListCommand(), templateGetCommand(),
		templateValidateCommand(), templateDiffCommand())
	return cmd
}

// readTemplate parses and validates the YAML template in path with the
// rules RegisterTaskTemplate applies.
func readTemplate(path string) (*taskerv1.TaskTemplate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{err}
	}
	tpl, err := registry.ParseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := registry.Validate(tpl); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tpl, nil
}

func templateApplyCommand() *cobra.Command {
	var replace bool
	cmd := &cobra.Command{Use: "apply FILE", Short: "Register the task template in a YAML file", Args: cobra.ExactArgs(1)}
	cmd.Flags().BoolVar(&replace, "replace", false, "replace an existing version whose content differs")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		tpl, err := readTemplate(args[0])
		if err != nil {
			return err
		}
		resp, err := taskerv1.NewRegistryServiceClient(c.conn).RegisterTaskTemplate(ctx,
			&taskerv1.RegisterTaskTemplateRequest{Template: tpl, Replace: replace})
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return c.print(resp, func(w io.Writer) {
			fmt.Fprintf(w, "%s\n", enumName(resp.GetOutcome(), "REGISTRATION_OUTCOME_"))
			templateTable(w, []*taskerv1.TaskTemplate{resp.GetTemplate()})
		})
	})
}

func templateListCommand() *cobra.Command {
	var namespace, name, pageToken string
	var pageSize int32
	cmd := &cobra.Command{Use: "list", Short: "List registered templates, every version", Args: cobra.NoArgs}
	cmd.Flags().StringVar(&namespace, "namespace", "", "only templates of this namespace")
	cmd.Flags().StringVar(&name, "name", "", "only versions of this template name")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "templates per page (default the server's)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "the next page of an earlier list")
	return clientCommand(cmd, func(ctx context.Context, c *client, _ []string) error {
		resp, err := taskerv1.NewRegistryServiceClient(c.conn).ListTaskTemplates(ctx, &taskerv1.ListTaskTemplatesRequest{
			Namespace: namespace, Name: name, PageSize: pageSize, PageToken: pageToken,
		})
		if err != nil {
			return err
		}
		if err := c.print(resp, func(w io.Writer) { templateTable(w, resp.GetTemplates()) }); err != nil {
			return err
		}
		c.nextPage(resp.GetNextPageToken())
		return nil
	})
}

func templateGetCommand() *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "get NAMESPACE NAME",
		Short: "Show a registered template (the newest version unless --version); the table output is its YAML",
		Args:  cobra.ExactArgs(2),
	}
	cmd.Flags().StringVar(&version, "version", "", "template version (default the newest)")
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		resp, err := taskerv1.NewRegistryServiceClient(c.conn).GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{
			Namespace: args[0], Name: args[1], Version: version,
		})
		if err != nil {
			return err
		}
		if c.format == outputTable {
			b, err := marshal(resp.GetTemplate(), outputYAML)
			if err != nil {
				return err
			}
			_, err = c.out.Write(b)
			return err
		}
		return c.print(resp, nil)
	})
}

func templateValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a YAML template with the server's rules, offline",
		Long:  "Check a YAML template with every rule RegisterTaskTemplate applies, without a server. Each field at fault is listed.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tpl, err := readTemplate(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: %s/%s %s, %d steps\n",
				args[0], tpl.GetNamespace(), tpl.GetName(), tpl.GetVersion(), len(tpl.GetSteps()))
			return err
		},
	}
}

func templateDiffCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff FILE",
		Short: "Show what `template apply FILE` would change on the server",
		Long: "Compare the template in FILE with the version of the same namespace, name and version on the server, both\n" +
			"normalised as the server stores them: prints a line diff of their YAML, \"unchanged\", or \"new\" when the\n" +
			"server has no such version (apply would create it).",
		Args: cobra.ExactArgs(1),
	}
	return clientCommand(cmd, func(ctx context.Context, c *client, args []string) error {
		local, err := readTemplate(args[0])
		if err != nil {
			return err
		}
		resp, err := taskerv1.NewRegistryServiceClient(c.conn).GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{
			Namespace: local.GetNamespace(), Name: local.GetName(), Version: local.GetVersion(),
		})
		ref := fmt.Sprintf("%s/%s %s", local.GetNamespace(), local.GetName(), local.GetVersion())
		if status.Code(err) == codes.NotFound {
			_, err = fmt.Fprintf(c.out, "new: %s is not on the server; apply creates it\n", ref)
			return err
		}
		if err != nil {
			return err
		}
		a, err := comparable(resp.GetTemplate())
		if err != nil {
			return err
		}
		b, err := comparable(local)
		if err != nil {
			return err
		}
		if a == b {
			_, err = fmt.Fprintf(c.out, "unchanged: %s\n", ref)
			return err
		}
		_, err = fmt.Fprintf(c.out, "--- server %s\n+++ %s\n%s", ref, args[0], lineDiff(a, b))
		return err
	})
}

// comparable renders a template as the server stores it, without the
// fields only the server sets, as YAML.
func comparable(t *taskerv1.TaskTemplate) (string, error) {
	n := proto.Clone(registry.Normalize(t)).(*taskerv1.TaskTemplate)
	n.CreateTime, n.UpdateTime, n.ContentHash = nil, nil, ""
	b, err := marshal(n, outputYAML)
	return string(b), err
}

// lineDiff is a minimal line diff of a and b (longest common
// subsequence): "-" lines only in a, "+" only in b, " " in both.
func lineDiff(a, b string) string {
	x := strings.Split(strings.TrimSuffix(a, "\n"), "\n")
	y := strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString(" " + x[i] + "\n")
			i++
			j++
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			out.WriteString("+" + y[j] + "\n")
			j++
		default:
			out.WriteString("-" + x[i] + "\n")
			i++
		}
	}
	return out.String()
}

// templateTable is the one-line-per-template table.
func templateTable(w io.Writer, tpls []*taskerv1.TaskTemplate) {
	fmt.Fprintln(w, "NAMESPACE\tNAME\tVERSION\tSTEPS\tHASH\tCREATED")
	for _, t := range tpls {
		hash := t.GetContentHash()
		if len(hash) > 12 {
			hash = hash[:12]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", t.GetNamespace(), t.GetName(), t.GetVersion(), len(t.GetSteps()), dash(hash), stamp(t.GetCreateTime()))
	}
}
