package plugin

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newListCommand(s *session) *cobra.Command {
	var sel selection
	var output *outputFlags
	cmd := &cobra.Command{
		Use:   "list [-l SELECTOR] [-A]",
		Short: "List connections with their state, token expiry and failing reason",
		Long: "List the connections of the namespace (all namespaces with -A), one line each: its state " +
			"(the Ready condition's reason), when its token expires and, while refreshing fails, why. " +
			"-o wide adds the grant, instance, token Secret, next refresh and message; -o json or yaml " +
			"prints a List of the connections as kubectl get does.",
		Example: `  kubectl servicenow list
  kubectl servicenow list -A -o wide
  kubectl servicenow list -l team=payments -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := sel.labels(cmd)
			if err != nil {
				return err
			}
			p, err := output.printer(cmd)
			if err != nil {
				return err
			}
			c, ns, err := s.client()
			if err != nil {
				return err
			}
			conns, err := sel.list(cmd.Context(), c, ns, l)
			if err != nil {
				return err
			}
			if p != nil {
				// An empty List too, as kubectl get -o json prints it.
				return printConnections(p, s.out(output), conns, false)
			}
			if len(conns) == 0 {
				// On stderr, as kubectl get does, so a pipe sees no rows.
				_, err := fmt.Fprintf(s.ErrOut, "No ServiceNowConnections found in %s.\n", sel.where(ns))
				return err
			}
			return RenderList(s.Out, conns, s.now(), RenderOptions{Wide: output.wide()})
		},
	}
	sel.addFlags(cmd, "List connections")
	output = newOutputFlags(cmd)
	return cmd
}
