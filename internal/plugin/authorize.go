package plugin

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newAuthorizeCommand(s *session) *cobra.Command {
	var (
		open    bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "authorize NAME",
		Short: "Print the link a person opens to authorise an AuthorizationCode connection, and wait until it is Ready",
		Long: "Print the start link (status.authorizationURL) of a connection with the AuthorizationCode grant: " +
			"open it, log in to ServiceNow and allow access, and snowauth keeps the connection's token fresh from then on. " +
			"The link works once and for minutes; snowauth renews it while it is needed. With --wait (the default), " +
			"wait until the connection is Ready with a new authorization; exit 3 if it is not when --timeout passes.",
		Example: `  kubectl servicenow authorize catalog
  kubectl servicenow authorize catalog --open`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: s.completeNames(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return usageError(cmd, "--timeout must be positive, got %s", timeout)
			}
			c, ns, err := s.client()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			conn := &snowv1.ServiceNowConnection{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
				return explain(err, ns, name)
			}
			if conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
				return fmt.Errorf("%s/%s uses the %s grant: only AuthorizationCode connections are authorised by a person", ns, name, conn.Spec.GrantType)
			}
			link := conn.Status.AuthorizationURL
			if link == "" {
				if r := meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionReady); r != nil && r.Status == "True" {
					_, err := fmt.Fprintf(s.Out, "%s/%s is authorised; its refresh token stops working %s.\n",
						ns, name, when(conn.Status.RefreshTokenExpiresAt, s.now()))
					return err
				}
				return fmt.Errorf("snowauth has no authorization link for %s/%s yet (%s); see kubectl servicenow status %s",
					ns, name, stateSummary(conn), name)
			}
			if _, err := fmt.Fprintf(s.Out, "Open this link in a browser, log in to ServiceNow and allow access (it works once, for a few minutes):\n\n  %s\n\n", link); err != nil {
				return err
			}
			if open {
				if err := openBrowser(link); err != nil {
					_, _ = fmt.Fprintf(s.ErrOut, "could not open a browser (%v): open the link by hand\n", err)
				}
			}
			if !wait {
				return nil
			}
			if _, err := fmt.Fprintf(s.Out, "Waiting until %s/%s is authorised (Ctrl-C to stop; the link stays valid)...\n", ns, name); err != nil {
				return err
			}
			ready, err := waitForAuthorization(cmd, c, conn, timeout)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.Out, "Authorised: Secret %s holds a token that expires %s; the refresh token stops working %s.\n",
				ready.Status.TokenSecretName, when(ready.Status.ExpiresAt, s.now()), when(ready.Status.RefreshTokenExpiresAt, s.now()))
			return err
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "Also open the link in the default browser.")
	cmd.Flags().BoolVar(&wait, "wait", true, "Wait until the connection is authorised and Ready.")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "How long to wait for the authorization; exit 3 if nobody completes it in time.")
	return cmd
}

// waitForAuthorization waits until conn no longer needs a person: Ready,
// with no link in status.
func waitForAuthorization(cmd *cobra.Command, c client.WithWatch, conn *snowv1.ServiceNowConnection, timeout time.Duration) (*snowv1.ServiceNowConnection, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	ready, err := watchUntil(ctx, c, conn, func(current *snowv1.ServiceNowConnection) (bool, error) {
		return current.Status.AuthorizationURL == "" &&
			meta.IsStatusConditionTrue(current.Status.Conditions, snowv1.ConditionReady), nil
	})
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, notReady(errors.New("timed out: nobody completed the authorization; run the command again for a fresh link"))
	}
	return ready, err
}

// openBrowser opens url with the desktop's handler.
func openBrowser(url string) error {
	name := "xdg-open"
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return exec.CommandContext(context.Background(), "rundll32", "url.dll,FileProtocolHandler", url).Start()
	}
	return exec.CommandContext(context.Background(), name, url).Start()
}
