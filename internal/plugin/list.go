package plugin

import (
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newListCommand(s *session) *cobra.Command {
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List connections with their state, token expiry and failing reason",
		Example: `  kubectl servicenow list
  kubectl servicenow list -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := s.client()
			if err != nil {
				return err
			}
			var opts []client.ListOption
			where := fmt.Sprintf("namespace %q", ns)
			if allNamespaces {
				where = "any namespace"
			} else {
				opts = append(opts, client.InNamespace(ns))
			}
			var list snowv1.ServiceNowConnectionList
			if err := c.List(cmd.Context(), &list, opts...); err != nil {
				return explain(err, ns, "")
			}
			if len(list.Items) == 0 {
				// On stderr, as kubectl get does, so a pipe sees no rows.
				_, err := fmt.Fprintf(s.ErrOut, "No ServiceNowConnections found in %s.\n", where)
				return err
			}
			return RenderList(s.Out, list.Items, s.now())
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List connections in all namespaces.")
	return cmd
}
