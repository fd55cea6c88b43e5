package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
)

func templateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Manage task templates on a running server"}
	var addr string
	var cf connFlags
	var replace bool
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Register the task template in a YAML file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			tpl, err := registry.ParseYAML(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			conn, err := dial(addr, cf)
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := taskerv1.NewRegistryServiceClient(conn).RegisterTaskTemplate(cmd.Context(),
				&taskerv1.RegisterTaskTemplateRequest{Template: tpl, Replace: replace})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return err
		},
	}
	apply.Flags().StringVar(&addr, "addr", env("TASKER_ADDR", "127.0.0.1:50051"), "server address [TASKER_ADDR]")
	cf.register(apply)
	apply.Flags().BoolVar(&replace, "replace", false, "replace an existing version whose content differs")
	cmd.AddCommand(apply)
	return cmd
}
