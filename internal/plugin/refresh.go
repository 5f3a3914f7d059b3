package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newRefreshCommand(s *session) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "refresh NAME",
		Short: "Ask snowauth to obtain a new token for a connection now",
		Long: "Ask snowauth to obtain a new token for a connection now, by setting the annotation " +
			snowv1.AnnotationRefreshRequestedAt + " to the current time. With --wait, wait until snowauth " +
			"has acted on this request and report the outcome; a failed refresh exits non-zero.",
		Example: `  kubectl servicenow refresh orders
  kubectl servicenow refresh orders --wait --timeout 1m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return fmt.Errorf("--timeout must be positive, got %s", timeout)
			}
			c, ns, err := s.client()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			value := s.now().UTC().Format(time.RFC3339Nano)
			conn, err := requestRefresh(ctx, c, ns, name, value)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(s.Out, "Requested a refresh of %s/%s (%s=%s).\n",
				ns, name, snowv1.AnnotationRefreshRequestedAt, value); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			handled, err := waitForRefresh(ctx, c, conn, value, timeout)
			if err != nil {
				return err
			}
			if err := refreshOutcome(handled, s.now()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.Out, "Refreshed: Secret %s holds a token that expires %s.\n",
				handled.Status.TokenSecretName, when(handled.Status.ExpiresAt, s.now()))
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false,
		"Wait until snowauth has acted on the request; exit non-zero if the refresh failed.")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute,
		"How long --wait waits for snowauth to act before giving up.")
	return cmd
}

// requestRefresh sets the refresh annotation to value with a merge patch,
// which touches nothing else and needs only the patch verb. A suspended
// connection is refused: snowauth would ignore the request.
func requestRefresh(ctx context.Context, c client.Client, ns, name, value string) (*snowv1.ServiceNowConnection, error) {
	conn := &snowv1.ServiceNowConnection{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
		return nil, explain(err, ns, name)
	}
	if conn.Spec.Suspend {
		return nil, fmt.Errorf("%s/%s is suspended (spec.suspend is true) and snowauth does not refresh it; "+
			"set spec.suspend to false first", ns, name)
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{snowv1.AnnotationRefreshRequestedAt: value}},
	})
	if err != nil {
		return nil, err
	}
	if err := c.Patch(ctx, conn, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, explain(err, ns, name)
	}
	return conn, nil
}

// waitForRefresh watches conn until snowauth has acted on refresh request
// value, and returns the connection as snowauth left it then. The operator
// records the handled request in the same status write as the refresh's
// outcome, so that state holds the answer. timeout bounds the whole wait.
//
// It lists, then watches from the list's resourceVersion, so no change in
// between is missed, and lists again when the server ends the watch. API
// errors (RBAC without list or watch, say) end the wait at once rather
// than being retried until the timeout blames the operator.
func waitForRefresh(ctx context.Context, c client.WithWatch, conn *snowv1.ServiceNowConnection, value string,
	timeout time.Duration) (*snowv1.ServiceNowConnection, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	handled, err := watchUntil(ctx, c, conn, func(current *snowv1.ServiceNowConnection) (bool, error) {
		return requestHandled(current, value)
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return nil, fmt.Errorf("timed out after %s: snowauth has not acted on refresh request %s of %s/%s; "+
			"is the operator running, and does it watch namespace %s?", timeout, value, conn.Namespace, conn.Name, conn.Namespace)
	}
	return handled, err
}

// watchUntil watches conn until done says so (or fails), and returns the
// connection as it was then.
func watchUntil(ctx context.Context, c client.WithWatch, conn *snowv1.ServiceNowConnection,
	done func(*snowv1.ServiceNowConnection) (bool, error)) (*snowv1.ServiceNowConnection, error) {
	inNamespace := client.InNamespace(conn.Namespace)
	byName := client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", conn.Name)}
	deleted := fmt.Errorf("%s/%s was deleted while waiting", conn.Namespace, conn.Name)
	for first := true; ; first = false {
		if !first {
			// The server ended the watch (it does every few minutes):
			// pause so that a server ending every watch at once cannot
			// make this a busy loop.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		var list snowv1.ServiceNowConnectionList
		if err := c.List(ctx, &list, inNamespace, byName); err != nil {
			return nil, explain(err, conn.Namespace, conn.Name)
		}
		if len(list.Items) == 0 {
			return nil, deleted
		}
		if ok, err := done(&list.Items[0]); ok || err != nil {
			return handledOrNil(&list.Items[0], err)
		}
		w, err := c.Watch(ctx, &snowv1.ServiceNowConnectionList{}, inNamespace, byName,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			return nil, explain(err, conn.Namespace, conn.Name)
		}
		handled, err := untilDone(ctx, w, done, deleted)
		w.Stop()
		if handled != nil || err != nil {
			return handled, err
		}
	}
}

// untilDone reads w until done accepts a connection. It returns nil, nil
// when the watch ended and must be started again.
func untilDone(ctx context.Context, w watch.Interface, done func(*snowv1.ServiceNowConnection) (bool, error),
	deleted error) (*snowv1.ServiceNowConnection, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, open := <-w.ResultChan():
			if !open {
				return nil, nil
			}
			switch ev.Type {
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					return nil, nil
				}
				return nil, err
			case watch.Deleted:
				return nil, deleted
			case watch.Added, watch.Modified:
				current, ok := ev.Object.(*snowv1.ServiceNowConnection)
				if !ok {
					continue
				}
				if ok, err := done(current); ok || err != nil {
					return handledOrNil(current, err)
				}
			}
		}
	}
}

func handledOrNil(conn *snowv1.ServiceNowConnection, err error) (*snowv1.ServiceNowConnection, error) {
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// requestHandled says whether conn shows snowauth's answer to refresh
// request value. Someone else replacing the request ends the wait with an
// error: snowauth acts only on the annotation's latest value, so this
// request would never be marked handled.
func requestHandled(conn *snowv1.ServiceNowConnection, value string) (bool, error) {
	if current := conn.Annotations[snowv1.AnnotationRefreshRequestedAt]; current != value {
		return false, fmt.Errorf("another refresh request (%s=%s) replaced this one; see kubectl servicenow status %s",
			snowv1.AnnotationRefreshRequestedAt, current, conn.Name)
	}
	return conn.Status.LastHandledRefreshRequest == value, nil
}

// refreshOutcome is nil when the handled request obtained a token, and the
// failure otherwise. RefreshFailed is the signal rather than
// lastRefreshTime moving: lastRefreshTime has 1-second resolution, so two
// refreshes within a second look the same, while snowauth sets or clears
// RefreshFailed in the status write that marks the request handled.
func refreshOutcome(conn *snowv1.ServiceNowConnection, now time.Time) error {
	f := refreshFailed(conn)
	if f == nil {
		return nil
	}
	msg := fmt.Sprintf("the refresh of %s/%s failed: %s: %s", conn.Namespace, conn.Name, f.Reason, f.Message)
	if st := conn.Status; st.ExpiresAt != nil && st.ExpiresAt.After(now) {
		msg += fmt.Sprintf(" (the previous token in Secret %s stays valid until %s, %s)",
			st.TokenSecretName, st.ExpiresAt.UTC().Format(time.RFC3339), RelativeTime(st.ExpiresAt.Time, now))
	}
	return errors.New(msg)
}
