package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
)

func newAuthorizeCommand(s *session) *cobra.Command {
	var (
		open, wait, again bool
		timeout           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "authorize NAME",
		Short: "Ask snowauth for a link a person opens to authorise an AuthorizationCode connection, print it, and wait until it is Ready",
		Long: "Ask snowauth for a new authorization link for a connection with the AuthorizationCode grant, print it, " +
			"and wait until a person has opened it, logged in to ServiceNow and allowed access. The link works once, " +
			"for minutes, and only until a newer one is asked for. Asking needs patch on the connection; reading the " +
			"link needs get on Secrets in its namespace (the link is kept in Secret <name>-refresh-token, never in " +
			"status). With --wait (the default), wait until the connection is authorised; exit 3 if it is not when " +
			"--timeout passes.",
		Example: `  kubectl servicenow authorize catalog
  kubectl servicenow authorize catalog --open
  kubectl servicenow authorize catalog --again   # authorise anew, e.g. before the refresh token expires`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: s.completeNames(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usageError(cmd, "--timeout must be positive, got %s", timeout)
			}
			ctx := cmd.Context()
			c, conn, err := s.connection(ctx, args[0])
			if err != nil {
				return err
			}
			ns, name := conn.Namespace, conn.Name
			if conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
				return fmt.Errorf("%s/%s uses the %s grant: only AuthorizationCode connections are authorised by a person", ns, name, conn.Spec.GrantType)
			}
			if authorised(conn) && !again {
				_, err := fmt.Fprintf(s.Out, "%s/%s is authorised; its refresh token stops working %s. Use --again to authorise it anew.\n",
					ns, name, when(conn.Status.RefreshTokenExpiresAt, s.now()))
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			link, linkID, err := requestLink(ctx, c, conn, s.now())
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(s.Out, "Open this link in a browser, log in to ServiceNow and allow access. It works once and expires %s; "+
				"a newer link replaces it:\n\n  %s\n\n", when(linkExpiry(conn, linkID), s.now()), Printable(link)); err != nil {
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
			ready, err := waitForAuthorization(ctx, c, conn, linkID)
			if err != nil {
				return err
			}
			by := ""
			if a := ready.Status.Authorization; a != nil && a.AuthorizedBy != "" {
				by = " by ServiceNow user " + Printable(a.AuthorizedBy)
			}
			_, err = fmt.Fprintf(s.Out, "Authorised%s: Secret %s holds a token that expires %s; the refresh token stops working %s.\n",
				by, ready.Status.TokenSecretName, when(ready.Status.ExpiresAt, s.now()), when(ready.Status.RefreshTokenExpiresAt, s.now()))
			return err
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "Also open the link in the default browser (only an https:// link on the authorization server).")
	cmd.Flags().BoolVar(&wait, "wait", true, "Wait until the connection is authorised and Ready.")
	cmd.Flags().BoolVar(&again, "again", false, "Make a new link even when the connection is authorised.")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "How long to wait for the link and the authorization; exit 3 if nobody completes it in time.")
	return cmd
}

// authorised says a person has authorised conn and nothing asks for it
// again.
func authorised(conn *snowv1.ServiceNowConnection) bool {
	return meta.IsStatusConditionTrue(conn.Status.Conditions, snowv1.ConditionReady) &&
		!meta.IsStatusConditionTrue(conn.Status.Conditions, snowv1.ConditionRefreshTokenExpiring) &&
		meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionRefreshFailed) == nil
}

// requestLink asks the manager for a new link (the
// authorization-requested-at annotation), waits until it made one, and
// reads it from the Secret status names.
func requestLink(ctx context.Context, c client.WithWatch, conn *snowv1.ServiceNowConnection, now time.Time) (string, string, error) {
	ns, name := conn.Namespace, conn.Name
	value := now.UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(conn.DeepCopy())
	if conn.Annotations == nil {
		conn.Annotations = map[string]string{}
	}
	conn.Annotations[snowv1.AnnotationAuthorizationRequestedAt] = value
	if err := c.Patch(ctx, conn, patch); err != nil {
		return "", "", explain(err, ns, name)
	}
	handled, err := watchUntil(ctx, c, conn, func(cur *snowv1.ServiceNowConnection) (bool, error) {
		return cur.Status.Authorization != nil && cur.Status.Authorization.LastHandledRequest == value, nil
	})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", "", notReady(fmt.Errorf("snowauth made no link for %s/%s in time: is the manager running? See kubectl servicenow status %s", ns, name, name))
		}
		return "", "", err
	}
	*conn = *handled
	a := handled.Status.Authorization
	if a.LinkID == "" || a.LinkSecretName == "" {
		return "", "", fmt.Errorf("snowauth made no link for %s/%s (%s); see kubectl servicenow status %s", ns, name, Printable(stateSummary(handled)), name)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.LinkSecretName}, secret); err != nil {
		if apierrors.IsForbidden(err) {
			return "", "", fmt.Errorf("the link is in Secret %s/%s, which you may not read: ask someone who may read Secrets in %s", ns, a.LinkSecretName, ns)
		}
		return "", "", explain(err, ns, a.LinkSecretName)
	}
	link := string(secret.Data[snowv1.AuthorizationKeyURL])
	if err := checkLink(link, a.Server); err != nil {
		return "", "", fmt.Errorf("secret %s/%s holds no authorization link snowauth would make (%w): not shown", ns, a.LinkSecretName, err)
	}
	return link, a.LinkID, nil
}

// checkLink accepts what snowauth's links look like: https (http only on a
// loopback address), no user name, the /authorize of the authorization
// server the manager names in status (server), a state and nothing else.
// Anything else is not printed or opened.
func checkLink(link, server string) error {
	u, err := url.Parse(link)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return errors.New("not an absolute URL")
	case u.Scheme != "https" && (u.Scheme != "http" || !authserver.IsLoopback(u.Hostname())):
		return errors.New("not https")
	case u.User != nil || u.Fragment != "":
		return errors.New("a user name or fragment")
	case u.Scheme+"://"+u.Host+u.Path != strings.TrimSuffix(server, "/")+"/authorize":
		return errors.New("not the /authorize of the authorization server status names")
	}
	q := u.Query()
	if len(q) != 1 || len(q["state"]) != 1 || q.Get("state") == "" {
		return errors.New("not just a state")
	}
	return nil
}

func linkExpiry(conn *snowv1.ServiceNowConnection, linkID string) *metav1.Time {
	if a := conn.Status.Authorization; a != nil && a.LinkID == linkID {
		return a.LinkExpiresAt
	}
	return nil
}

// waitForAuthorization waits until the link completed and conn is Ready,
// and fails when it failed or a newer link replaced it.
func waitForAuthorization(ctx context.Context, c client.WithWatch, conn *snowv1.ServiceNowConnection, linkID string) (*snowv1.ServiceNowConnection, error) {
	ready, err := watchUntil(ctx, c, conn, func(cur *snowv1.ServiceNowConnection) (bool, error) {
		a := cur.Status.Authorization
		switch {
		case a == nil:
			return false, nil
		case a.CompletedLinkID == linkID:
			return meta.IsStatusConditionTrue(cur.Status.Conditions, snowv1.ConditionReady), nil
		case a.FailedLinkID == linkID:
			return false, fmt.Errorf("the authorization failed: %s", Printable(a.FailureMessage))
		case a.LinkID != linkID:
			return false, errors.New("a newer link was asked for: this one no longer works")
		}
		return false, nil
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
