package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newRefreshCommand(s *session) *cobra.Command {
	var (
		sel     selection
		all     bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "refresh (NAME... | --all | -l SELECTOR) [-A] [--wait [--timeout 2m]]",
		Short: "Ask snowauth to obtain a new token for connections now",
		Long: "Ask snowauth to obtain a new token for each named connection now, or for every connection of the " +
			"namespace (--all) or that the selector matches (-l), in all namespaces with -A, by setting the annotation " +
			snowv1.AnnotationRefreshRequestedAt + " to the current time. A suspended connection is refused. " +
			"With --wait, wait until snowauth has acted on the request of every connection and print the outcome " +
			"of each; exit 3 if one is not refreshed and Ready when --timeout passes.",
		Example: `  kubectl servicenow refresh orders
  kubectl servicenow refresh orders crm --wait --timeout 1m
  kubectl servicenow refresh --all -n team-a
  kubectl servicenow refresh -l team=payments -A --wait`,
		Args:              usageArgs(cobra.ArbitraryArgs),
		ValidArgsFunction: s.completeNames(true),
		RunE: func(cmd *cobra.Command, names []string) error {
			switch {
			case all && sel.selector != "":
				return usageError(cmd, "give --all or -l/--selector, not both")
			case len(names) > 0 && (all || sel.selector != ""):
				return usageError(cmd, "give connection names, --all or -l/--selector, not several of them")
			case len(names) > 0 && sel.allNamespaces:
				return usageError(cmd, "a connection cannot be named across all namespaces: use -n, or --all or -l with -A")
			case len(names) == 0 && !all && sel.selector == "":
				return usageError(cmd, "give one or more connection names, --all for every connection of the namespace, "+
					"or -l/--selector (-A widens --all and -l to all namespaces)")
			case wait && timeout <= 0:
				return usageError(cmd, "--timeout must be positive, got %s", timeout)
			}
			l, err := sel.labels(cmd)
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
			if len(names) == 0 && len(conns) == 0 {
				_, err := fmt.Fprintf(s.ErrOut, "No ServiceNowConnections found in %s.\n", sel.where(ns))
				return err
			}
			total := max(len(names), len(conns))
			value := s.now().UTC().Format(time.RFC3339Nano)
			var requested []*snowv1.ServiceNowConnection
			for i := range conns {
				conn := &conns[i]
				if err := requestRefresh(ctx, c, conn, value); err != nil {
					errs = append(errs, err)
					continue
				}
				if _, err := fmt.Fprintf(s.Out, "Requested a refresh of %s/%s (%s=%s).\n",
					conn.Namespace, conn.Name, snowv1.AnnotationRefreshRequestedAt, value); err != nil {
					return err
				}
				requested = append(requested, conn)
			}
			if wait {
				errs = append(errs, s.waitForRefreshes(ctx, c, requested, value, timeout)...)
			}
			return joinErrors(total, errs)
		},
	}
	sel.addFlags(cmd, "With --all or -l, refresh connections")
	cmd.Flags().BoolVar(&all, "all", false, "Refresh every connection of the namespace (of all namespaces with -A).")
	cmd.Flags().BoolVar(&wait, "wait", false,
		"Wait until snowauth has acted on the request of every connection; exit 3 if one is not refreshed and Ready.")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute,
		"How long --wait waits for snowauth to act, for all connections together, before giving up.")
	return cmd
}

// waitForRefreshes waits for the refresh of each of conns at once, prints
// a line for each refreshed connection as snowauth finishes it, and
// returns the errors of the others, in the order of conns.
func (s *session) waitForRefreshes(ctx context.Context, c client.WithWatch, conns []*snowv1.ServiceNowConnection,
	value string, timeout time.Duration) []error {
	var (
		wg      sync.WaitGroup
		printMu sync.Mutex
	)
	results := make([]error, len(conns))
	for i, conn := range conns {
		wg.Go(func() {
			handled, err := waitForRefresh(ctx, c, conn, value, timeout)
			if err == nil {
				err = refreshOutcome(handled, s.now())
			}
			if err != nil {
				results[i] = err
				return
			}
			printMu.Lock()
			defer printMu.Unlock()
			_, results[i] = fmt.Fprintf(s.Out, "Refreshed %s/%s: Secret %s holds a token that expires %s.\n",
				handled.Namespace, handled.Name, handled.Status.TokenSecretName, when(handled.Status.ExpiresAt, s.now()))
		})
	}
	wg.Wait()
	var errs []error
	for _, err := range results {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// requestRefresh sets the refresh annotation of conn to value with a merge
// patch, which touches nothing else and needs only the patch verb. A
// suspended connection is refused: snowauth would ignore the request.
func requestRefresh(ctx context.Context, c client.Client, conn *snowv1.ServiceNowConnection, value string) error {
	if conn.Spec.Suspend {
		return fmt.Errorf("%s/%s is suspended (spec.suspend is true) and snowauth does not refresh it; "+
			"set spec.suspend to false first", conn.Namespace, conn.Name)
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{snowv1.AnnotationRefreshRequestedAt: value}},
	})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, conn, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return explain(err, conn.Namespace, conn.Name)
	}
	return nil
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
		return nil, notReady(fmt.Errorf("timed out after %s: snowauth has not acted on refresh request %s of %s/%s; "+
			"is the operator running, and does it watch namespace %s?", timeout, value, conn.Namespace, conn.Name, conn.Namespace))
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

// refreshOutcome is nil when the handled request obtained a token and the
// connection is Ready, and what went wrong otherwise, as an ExitNotReady
// error. RefreshFailed is the signal rather than lastRefreshTime moving:
// lastRefreshTime has 1-second resolution, so two refreshes within a
// second look the same, while snowauth sets or clears RefreshFailed in the
// status write that marks the request handled.
func refreshOutcome(conn *snowv1.ServiceNowConnection, now time.Time) error {
	if f := refreshFailed(conn); f != nil {
		msg := fmt.Sprintf("the refresh of %s/%s failed: %s: %s", conn.Namespace, conn.Name, f.Reason, f.Message)
		if st := conn.Status; st.ExpiresAt != nil && st.ExpiresAt.After(now) {
			msg += fmt.Sprintf(" (the previous token in Secret %s stays valid until %s, %s)",
				st.TokenSecretName, st.ExpiresAt.UTC().Format(time.RFC3339), RelativeTime(st.ExpiresAt.Time, now))
		}
		return notReady(errors.New(msg))
	}
	if st := meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionStalled); st != nil && st.Status == metav1.ConditionTrue {
		return notReady(fmt.Errorf("%s/%s is stalled and needs a person: %s: %s", conn.Namespace, conn.Name, st.Reason, st.Message))
	}
	if r := meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		why := "snowauth has not reported Ready"
		if r != nil {
			why = r.Reason + ": " + r.Message
		}
		return notReady(fmt.Errorf("%s/%s is not Ready after the refresh: %s", conn.Namespace, conn.Name, why))
	}
	return nil
}
