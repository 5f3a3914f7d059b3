package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newRevokeCommand(s *session) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "revoke NAME [--wait [--timeout 2m]]",
		Short: "Ask snowauth to revoke a connection's access token at ServiceNow and store a new one now",
		Long: "For an access token that leaked: ask snowauth to revoke the access token in the connection's token Secret " +
			"at ServiceNow and to put a new one there at once, by setting the annotation " + snowv1.AnnotationRevokeRequestedAt +
			" to the current time. Applications that read the token file per request get the new token within about a " +
			"minute (the kubelet's sync) and 401s with the revoked one meanwhile. The refresh token of an AuthorizationCode " +
			"connection stays (kubectl servicenow authorize --again replaces it, and snowauth revokes the replaced one). " +
			"A suspended connection is refused. With --wait, wait until snowauth has acted and print the outcome; exit 3 " +
			"if the connection is not Ready with a new token when --timeout passes.",
		Example: `  kubectl servicenow revoke orders
  kubectl servicenow revoke orders --wait --timeout 1m`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: s.completeNames(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return usageError(cmd, "--timeout must be positive, got %s", timeout)
			}
			ctx := cmd.Context()
			c, conn, err := s.connection(ctx, args[0])
			if err != nil {
				return err
			}
			ns, name := conn.Namespace, conn.Name
			value := s.now().UTC().Format(time.RFC3339Nano)
			if err := requestRevocation(ctx, c, conn, value); err != nil {
				return err
			}
			if _, err := fmt.Fprintf(s.Out, "Requested the revocation of the access token of %s/%s (%s=%s).\n",
				ns, name, snowv1.AnnotationRevokeRequestedAt, value); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			handled, err := waitForRevocation(ctx, c, conn, value, timeout)
			if err != nil {
				return err
			}
			if err := revocationOutcome(handled); err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.Out, "Revoked the access token of %s/%s: Secret %s holds a new token that expires %s.\n",
				ns, name, handled.Status.TokenSecretName, when(handled.Status.ExpiresAt, s.now()))
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false,
		"Wait until snowauth has revoked the token and stored a new one; exit 3 if the connection is not Ready then.")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "How long --wait waits for snowauth to act before giving up.")
	return cmd
}

// requestRevocation sets the revoke annotation of conn to value with a
// merge patch, which touches nothing else and needs only the patch verb. A
// suspended connection is refused: snowauth would not act on it.
func requestRevocation(ctx context.Context, c client.Client, conn *snowv1.ServiceNowConnection, value string) error {
	if conn.Spec.Suspend {
		return fmt.Errorf("%s/%s is suspended (spec.suspend is true) and snowauth does not act on it; "+
			"set spec.suspend to false first", conn.Namespace, conn.Name)
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{snowv1.AnnotationRevokeRequestedAt: value}},
	})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, conn, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return explain(err, conn.Namespace, conn.Name)
	}
	return nil
}

// waitForRevocation watches conn until snowauth has acted on revoke request
// value (status.lastHandledRevokeRequest; snowauth records it in the status
// write that stores the new token, or says why it could not). When timeout
// passes first, the error says what the connection reports: a revocation
// that keeps failing, or no answer from snowauth at all.
func waitForRevocation(ctx context.Context, c client.WithWatch, conn *snowv1.ServiceNowConnection, value string,
	timeout time.Duration) (*snowv1.ServiceNowConnection, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	handled, err := watchUntil(wctx, c, conn, func(current *snowv1.ServiceNowConnection) (bool, error) {
		if v := current.Annotations[snowv1.AnnotationRevokeRequestedAt]; v != value {
			return false, fmt.Errorf("another revoke request (%s=%s) replaced this one; see kubectl servicenow status %s",
				snowv1.AnnotationRevokeRequestedAt, v, conn.Name)
		}
		return current.Status.LastHandledRevokeRequest == value, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || wctx.Err() == nil {
		return handled, err
	}
	current := &snowv1.ServiceNowConnection{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(conn), current); err == nil {
		if f := refreshFailed(current); f != nil && f.Reason == snowv1.ReasonRevocationFailed {
			return nil, notReady(fmt.Errorf("timed out after %s: %s/%s: %s", timeout, conn.Namespace, conn.Name, f.Message))
		}
	}
	return nil, notReady(fmt.Errorf("timed out after %s: snowauth has not acted on revoke request %s of %s/%s; "+
		"is the operator running, and does it watch namespace %s?", timeout, value, conn.Namespace, conn.Name, conn.Namespace))
}

// revocationOutcome is nil when the handled request left a new token and the
// connection is Ready, and what went wrong otherwise, as an ExitNotReady
// error. Handled means the token was revoked (or had expired): what can
// still fail is the new token.
func revocationOutcome(conn *snowv1.ServiceNowConnection) error {
	if f := refreshFailed(conn); f != nil {
		return notReady(fmt.Errorf("the access token of %s/%s was revoked, but no new token could be obtained: %s: %s",
			conn.Namespace, conn.Name, f.Reason, f.Message))
	}
	if r := meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		why := "snowauth has not reported Ready"
		if r != nil {
			why = r.Reason + ": " + r.Message
		}
		return notReady(fmt.Errorf("the access token of %s/%s was revoked, but the connection is not Ready: %s", conn.Namespace, conn.Name, why))
	}
	return nil
}
