package plugin

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newStatusCommand(s *session) *cobra.Command {
	var sel selection
	var output *outputFlags
	cmd := &cobra.Command{
		Use:   "status (NAME... | -l SELECTOR [-A])",
		Short: "Show connections' tokens, refresh schedules, conditions and recent events",
		Long: "Show each named connection at a glance: its state, instance, token Secret, when the token expires " +
			"and is refreshed next, failures since the last success, a JWTBearer connection's signing keys, " +
			"its conditions and its newest Events. " +
			"With -l, show every connection the selector matches. -o wide also shows every Event and who " +
			"reported it; -o json or yaml prints the connections as kubectl get does: the object for one NAME, " +
			"a List otherwise.",
		Example: `  kubectl servicenow status orders
  kubectl servicenow status orders crm -n team-a --context prod
  kubectl servicenow status -l team=payments -A
  kubectl servicenow status orders -o yaml`,
		Args:              usageArgs(cobra.ArbitraryArgs),
		ValidArgsFunction: s.completeNames(true),
		RunE: func(cmd *cobra.Command, names []string) error {
			switch {
			case len(names) > 0 && sel.selector != "":
				return usageError(cmd, "give connection names or -l/--selector, not both")
			case len(names) > 0 && sel.allNamespaces:
				return usageError(cmd, "a connection cannot be named across all namespaces: use -n, or -l with -A")
			case len(names) == 0 && sel.selector == "":
				return usageError(cmd, "give one or more connection names, or -l/--selector to select connections")
			}
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
			ctx := cmd.Context()
			conns, errs, err := sel.resolve(ctx, c, ns, names, l)
			if err != nil {
				return err
			}
			if len(names) == 0 && len(conns) == 0 && output.human() {
				_, err := fmt.Fprintf(s.ErrOut, "No ServiceNowConnections found in %s.\n", sel.where(ns))
				return err
			}
			if p != nil {
				if len(conns) > 0 || len(errs) == 0 {
					if err := printConnections(p, s.out(output), conns, len(names) == 1); err != nil {
						return err
					}
				}
				return joinErrors(max(len(names), len(conns)), errs)
			}
			for i := range conns {
				if i > 0 {
					if _, err := io.WriteString(s.Out, "\n"); err != nil {
						return err
					}
				}
				v, err := withEvents(ctx, c, &conns[i])
				if err != nil {
					return err
				}
				if err := RenderStatus(s.Out, v, s.now(), RenderOptions{Wide: output.wide()}); err != nil {
					return err
				}
			}
			return joinErrors(max(len(names), len(conns)), errs)
		},
	}
	sel.addFlags(cmd, "With -l, select connections")
	output = newOutputFlags(cmd)
	return cmd
}

// withEvents adds the Events regarding conn. A user who may read
// connections but not Events still gets the connection's status.
func withEvents(ctx context.Context, c client.Client, conn *snowv1.ServiceNowConnection) (StatusView, error) {
	v := StatusView{Connection: conn}
	// By UID, so the events of an earlier connection of the same name,
	// deleted and recreated, are not mistaken for this one's.
	sel, err := events.GetFieldSelector(eventsv1.SchemeGroupVersion,
		schema.GroupVersionKind{Kind: "ServiceNowConnection"}, conn.Name, conn.UID)
	if err != nil {
		return StatusView{}, err
	}
	var list eventsv1.EventList
	// Not fatal: the connection's own status is the main answer, and the
	// output says why the events are missing.
	if err := c.List(ctx, &list, client.InNamespace(conn.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		v.EventsUnavailable = err.Error()
	} else {
		v.Events = list.Items
	}
	return v, nil
}
