package plugin

import (
	"context"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newStatusCommand(s *session) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show a connection's token, refresh schedule, conditions and recent events",
		Example: `  kubectl servicenow status orders
  kubectl servicenow status orders -n team-a --context prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := s.client()
			if err != nil {
				return err
			}
			v, err := fetchStatus(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			return RenderStatus(s.Out, v, s.now())
		},
	}
}

// fetchStatus reads the connection and the Events regarding it. A user who
// may read connections but not Events still gets the connection's status.
func fetchStatus(ctx context.Context, c client.Client, ns, name string) (StatusView, error) {
	conn := &snowv1.ServiceNowConnection{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
		return StatusView{}, explain(err, ns, name)
	}
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
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		v.EventsUnavailable = err.Error()
	} else {
		v.Events = list.Items
	}
	return v, nil
}
