package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// The AuthorizationCode grant. A person who may edit the connection asks
// for a link (the authorization-requested-at annotation); the reconciler
// mints one and keeps it in the connection's operator-owned Secret
// <name>-refresh-token, which only people who may read Secrets in the
// namespace can read. The authorization server (internal/authserver, its
// own Deployment, holding no credentials) walks the person's browser
// through ServiceNow's login and hands the code over in a Secret of its
// namespace; the reconciler exchanges it (it alone holds the client
// secret), asks the instance who the person was, stores the refresh token
// and from then on refreshes with it like the RefreshToken grant.

// Authorization configures the AuthorizationCode grant.
type Authorization struct {
	// Links mints the start links.
	Links *authserver.Links
	// Namespace is where the authorization server writes hand-overs.
	Namespace string
	// SweepEvery is how often hand-overs that no current link will take
	// are deleted; 5 minutes when zero.
	SweepEvery time.Duration
}

// handoverSweeper deletes the hand-overs no connection's current link will
// take (a replaced or expired link's, a deleted connection's): the
// reconciler reads only the current link's, so they would stay forever. A
// hand-over is deleted when two sweeps in a row found it unclaimed, so one
// written just as its link was made (before the status naming it reached
// the cache) is not.
type handoverSweeper struct {
	r         *ServiceNowConnectionReconciler
	unclaimed map[string]bool
	// sharded: the cache holds one shard's connections, so a hand-over no
	// connection here claims may be another shard's. It is deleted only
	// once no link can take it any more (older than a link's lifetime and
	// the grace).
	sharded bool
}

// NeedLeaderElection is true: only the leader deletes.
func (h *handoverSweeper) NeedLeaderElection() bool { return true }

// Start sweeps until ctx ends. It implements manager.Runnable.
func (h *handoverSweeper) Start(ctx context.Context) error {
	every := h.r.Authorization.SweepEvery
	if every <= 0 {
		every = 5 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := h.sweep(ctx); err != nil {
				logf.FromContext(ctx).Error(err, "sweeping authorization hand-overs")
			}
		}
	}
}

func (h *handoverSweeper) sweep(ctx context.Context) error {
	var secrets corev1.SecretList
	if err := h.r.List(ctx, &secrets, client.InNamespace(h.r.Authorization.Namespace),
		client.HasLabels{authserver.LabelHandover}); err != nil {
		return err
	}
	unclaimed := map[string]bool{}
	for _, secret := range secrets.Items {
		id := authserver.LinkIDOfHandover(secret.Name)
		var conns snowv1.ServiceNowConnectionList
		if err := h.r.List(ctx, &conns, client.MatchingFields{linkIDIndex: id}); err != nil {
			return err
		}
		if id == "" || len(conns.Items) > 0 {
			continue
		}
		if h.sharded && time.Since(secret.CreationTimestamp.Time) < h.r.Authorization.Links.LinkTTL()+authserver.HandoverGrace {
			continue
		}
		if !h.unclaimed[secret.Name] {
			unclaimed[secret.Name] = true
			continue
		}
		if err := h.r.dropHandover(ctx, id); err != nil {
			return err
		}
		logf.FromContext(ctx).Info("deleted an authorization hand-over no current link takes", "secret", secret.Name)
	}
	h.unclaimed = unclaimed
	return nil
}

// Defaults of spec.authorizationCode.
const (
	defaultRefreshTokenLifespan = 2400 * time.Hour // ServiceNow's 100 days
	defaultReauthorizeBefore    = 14 * 24 * time.Hour
)

// authorize runs the grant's own steps before the decision: read the
// refresh-token Secret, mint a link if one was asked for, and pick up a
// hand-over of the current link.
func (r *ServiceNowConnectionReconciler) authorize(ctx context.Context, s *scope) error {
	s.refresh, s.handover, s.refreshTaken = nil, nil, false
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		return nil
	}
	if err := r.lookUpRefreshSecret(ctx, s); err != nil {
		return err
	}
	if err := r.mintRequestedLink(ctx, s); err != nil {
		return err
	}
	return r.readHandover(ctx, s)
}

// lookUpRefreshSecret reads the refresh-token Secret into s.refresh when
// the connection controls it, and sets s.refreshTaken when a Secret that is
// not the connection's has its name.
func (r *ServiceNowConnectionReconciler) lookUpRefreshSecret(ctx context.Context, s *scope) error {
	key := types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.RefreshTokenSecretName()}
	refresh := &corev1.Secret{}
	_, err := r.getSecret(ctx, key, refresh)
	switch {
	case err == nil && metav1.IsControlledBy(refresh, s.conn):
		s.refresh = refresh
	case err == nil:
		s.refreshTaken = true
	case !apierrors.IsNotFound(err):
		return err
	}
	return nil
}

// authz is the connection's status.authorization, created when absent.
func authz(s *scope) *snowv1.AuthorizationStatus {
	if s.conn.Status.Authorization == nil {
		s.conn.Status.Authorization = &snowv1.AuthorizationStatus{}
	}
	return s.conn.Status.Authorization
}

// mintRequestedLink mints a link when the authorization-requested-at
// annotation changed. The new link replaces every earlier one: only the
// link in status.authorization.linkID works.
func (r *ServiceNowConnectionReconciler) mintRequestedLink(ctx context.Context, s *scope) error {
	requested := s.conn.Annotations[snowv1.AnnotationAuthorizationRequestedAt]
	if requested == "" || s.conn.Status.Authorization != nil && requested == s.conn.Status.Authorization.LastHandledRequest {
		return nil
	}
	// A cached connection that has not caught up with the status naming
	// the link just made would make another, and the person's link would
	// stop working: decide from a current one, as for token requests.
	if err := r.confirmCacheIsCurrent(ctx, s); err != nil {
		return err
	}
	a := authz(s)
	a.LastHandledRequest = requested
	if r.Authorization == nil {
		return r.fail(ctx, s, needsPerson(snowv1.ReasonAuthorizationServerDisabled,
			"no link can be made: the AuthorizationCode grant needs the authorization server (the manager's --authorization-external-url)"), false)
	}
	creds, err := credentials.Get(ctx, r.APIReader, s.conn)
	if err != nil {
		return err
	}
	c, err := credentials.Parse(s.conn, creds, r.Tokens)
	if err != nil {
		return r.fail(ctx, s, err, false)
	}
	link, err := r.Authorization.Links.Mint(ctx, s.conn, creds.ResourceVersion, c.Instance.String(), c.Client.ClientID, s.now)
	if err != nil {
		return err
	}
	data := map[string][]byte{
		snowv1.AuthorizationKeyURL:       []byte(link.URL),
		snowv1.AuthorizationKeyExpiresAt: []byte(link.Expires.UTC().Format(time.RFC3339)),
	}
	if s.refresh != nil {
		for _, k := range []string{snowv1.AuthorizationKeyRefreshToken, snowv1.AuthorizationKeyIssuedAt} {
			if v, ok := s.refresh.Data[k]; ok {
				data[k] = v
			}
		}
	}
	if err := r.writeRefreshSecret(ctx, s, data, nil); err != nil {
		return r.fail(ctx, s, err, false) // a Secret in the way is a condition, not a silent retry
	}
	if a.LinkID != "" {
		// The replaced link's hand-over, if its person came back, goes:
		// that link no longer works.
		if err := r.dropHandover(ctx, a.LinkID); err != nil {
			return err
		}
	}
	a.LinkID, a.LinkSecretName, a.LinkExpiresAt = link.ID, s.conn.RefreshTokenSecretName(), &metav1.Time{Time: link.Expires}
	a.Server = r.Authorization.Links.ExternalURL.String()
	a.FailedLinkID, a.FailureMessage = "", ""
	r.event(s.conn, corev1.EventTypeNormal, "AuthorizationLinkCreated", "Authorize",
		"made authorization link %s, valid until %s, in Secret %s; earlier links no longer work",
		link.ID, link.Expires.UTC().Format(time.RFC3339), s.conn.RefreshTokenSecretName())
	return nil
}

// writeRefreshSecret writes the refresh-token Secret. What is written may be
// a refresh token that exists nowhere else, and the code it came from works
// once: writeOwnedSecret retries it from the API server's copy.
func (r *ServiceNowConnectionReconciler) writeRefreshSecret(ctx context.Context, s *scope, data map[string][]byte, annotations map[string]string) error {
	var err error
	s.refresh, err = r.writeOwnedSecret(ctx, s, s.conn.RefreshTokenSecretName(), s.refresh, data, annotations, "the refresh token")
	return err
}

// readHandover picks up the hand-over of the current link, verified. What
// ServiceNow refused at its login page (the person declined) is recorded
// and dropped here; a code is exchanged by the token request.
func (r *ServiceNowConnectionReconciler) readHandover(ctx context.Context, s *scope) error {
	a := s.conn.Status.Authorization
	if r.Authorization == nil || a == nil || a.LinkID == "" {
		return nil
	}
	key := types.NamespacedName{Namespace: r.Authorization.Namespace, Name: authserver.HandoverSecretName(a.LinkID)}
	secret := &corev1.Secret{}
	// The cache knows it exists (without its data: no connection owns it).
	if err := r.Get(ctx, key, secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := r.APIReader.Get(ctx, key, secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	signer, err := r.Authorization.Links.Keys.Signer(ctx)
	if err != nil {
		return err
	}
	h, err := authserver.ReadHandover(signer, secret, s.now)
	if err == nil && (h.State.UID != string(s.conn.UID) || h.State.Namespace != s.conn.Namespace || h.State.Name != s.conn.Name) {
		err = fmt.Errorf("the authorization hand-over %s is for another connection", secret.Name)
	}
	switch {
	case err != nil:
		return r.endAuthorization(ctx, s, a.LinkID, err.Error())
	case h.Error != "":
		r.event(s.conn, corev1.EventTypeWarning, "AuthorizationDenied", "Authorize",
			"ServiceNow reported %q at the callback of link %s: the person declined or could not log in", h.Error, h.LinkID)
		return r.endAuthorization(ctx, s, h.LinkID, fmt.Sprintf("ServiceNow reported %q: the person declined or could not log in.", h.Error))
	case h.Code == "":
		return r.endAuthorization(ctx, s, h.LinkID, "the callback carried no authorization code.")
	}
	s.handover = h
	return nil
}

// endAuthorization records that the authorization from link failed and
// drops its hand-over: a code works once, and the link is spent.
func (r *ServiceNowConnectionReconciler) endAuthorization(ctx context.Context, s *scope, linkID, why string) error {
	a := authz(s)
	a.FailedLinkID, a.FailureMessage = linkID, why
	if a.LinkID == linkID {
		a.LinkID, a.LinkExpiresAt = "", nil
	}
	s.handover = nil
	return r.dropHandover(ctx, linkID)
}

func (r *ServiceNowConnectionReconciler) dropHandover(ctx context.Context, linkID string) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Authorization.Namespace, Name: authserver.HandoverSecretName(linkID)}}
	return client.IgnoreNotFound(r.Delete(ctx, secret))
}

// addRefreshToken completes an AuthorizationCode request: with a pending
// hand-over, the code exchange; otherwise a refresh with the stored
// refresh token. It fails when a person must act first.
func (r *ServiceNowConnectionReconciler) addRefreshToken(ctx context.Context, s *scope, c *credentials.Credentials) error {
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		return nil
	}
	if r.Authorization == nil {
		return needsPerson(snowv1.ReasonAuthorizationServerDisabled,
			"the AuthorizationCode grant needs the authorization server: start the manager with --authorization-external-url")
	}
	if h := s.handover; h != nil {
		if h.State.CredentialsVersion != s.creds.ResourceVersion {
			// A code obtained for one OAuth client is never exchanged
			// with another's secret.
			msg := fmt.Sprintf("the credentials Secret changed after link %s was made.", h.LinkID)
			if err := r.endAuthorization(ctx, s, h.LinkID, msg); err != nil {
				return err
			}
			return needsPerson(snowv1.ReasonAuthorizationRequired, "%s Ask for a new link: kubectl servicenow authorize %s", msg, s.conn.Name)
		}
		signer, err := r.Authorization.Links.Keys.Signer(ctx)
		if err != nil {
			return err
		}
		c.Grant = servicenow.GrantAuthorizationCode
		c.Client.Code, c.Client.RedirectURI, c.Client.CodeVerifier = h.Code, r.Authorization.Links.RedirectURI(), signer.CodeVerifier(h.State)
		return nil
	}
	if s.refreshTaken {
		return needsPerson(snowv1.ReasonSecretConflict,
			"Secret %s exists and is not this connection's: delete it; snowauth keeps the refresh token there", s.conn.RefreshTokenSecretName())
	}
	if s.refresh == nil || len(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken]) == 0 {
		return needsPerson(snowv1.ReasonAuthorizationRequired,
			"nobody has authorised snowauth for this connection yet: run kubectl servicenow authorize %s -n %s", s.conn.Name, s.conn.Namespace)
	}
	c.Client.RefreshToken = string(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken])
	return nil
}

// afterTokenRequest finishes an AuthorizationCode request. After a code
// exchange it stores the refresh token and records who authorised, or
// records why the authorization failed; a transient failure keeps the
// hand-over, so the retry exchanges the code again while it may still
// work. After a refresh, a rejected refresh token most likely expired or
// was revoked: a person must authorise again.
func (r *ServiceNowConnectionReconciler) afterTokenRequest(ctx context.Context, s *scope, c *credentials.Credentials, tok *servicenow.Token, err error) error {
	h := s.handover
	switch {
	case s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode:
		return err
	case h == nil && servicenow.KindOf(err) == servicenow.KindAuthenticationFailed:
		return needsPerson(snowv1.ReasonRefreshTokenRejected,
			"ServiceNow rejected the stored refresh token (%s): it expired or was revoked; authorise again: kubectl servicenow authorize %s", err.Error(), s.conn.Name)
	case h == nil:
		return err
	case err != nil:
		if servicenow.KindOf(err).Retryable() && s.now.Before(time.Unix(h.State.Expires, 0).Add(authserver.HandoverGrace)) {
			return err
		}
		msg := fmt.Sprintf("ServiceNow did not accept the authorization code of link %s (%s).", h.LinkID, err.Error())
		if derr := r.endAuthorization(ctx, s, h.LinkID, msg); derr != nil {
			return derr
		}
		return needsPerson(snowv1.ReasonAuthorizationRequired, "%s Ask for a new link: kubectl servicenow authorize %s", msg, s.conn.Name)
	}
	who := "a person"
	user, uerr := r.Tokens.CurrentUser(ctx, c.Instance, tok.AccessToken)
	if uerr != nil {
		logf.FromContext(ctx).Info("the instance did not say who authorised", "reason", servicenow.KindOf(uerr))
	} else {
		who = "ServiceNow user " + user.Name
	}
	if tok.RefreshToken == "" {
		return r.endAuthorization(ctx, s, h.LinkID, "ServiceNow issued no refresh token (is the OAuth client's refresh token lifespan 0?).")
	}
	var superseded string
	if s.refresh != nil {
		superseded = string(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken])
	}
	if err := r.writeRefreshSecret(ctx, s, map[string][]byte{
		snowv1.AuthorizationKeyRefreshToken: []byte(tok.RefreshToken),
		snowv1.AuthorizationKeyIssuedAt:     []byte(s.now.UTC().Format(time.RFC3339)),
	}, map[string]string{snowv1.AnnotationAuthorizationNonce: h.LinkID}); err != nil {
		return err
	}
	// The token request answered these credentials: no second one for
	// the new refresh token.
	s.conn.Status.CredentialsResourceVersion = credentialsVersion(s.creds, s.refresh)
	a := authz(s)
	a.CompletedLinkID, a.AuthorizedBy, a.AuthorizedAt = h.LinkID, user.Name, &metav1.Time{Time: s.now.Truncate(time.Second)}
	a.LinkID, a.LinkSecretName, a.LinkExpiresAt, a.Server, a.FailedLinkID, a.FailureMessage = "", "", nil, "", "", ""
	r.event(s.conn, corev1.EventTypeNormal, "Authorized", "Authorize",
		"%s authorised snowauth at %s (link %s); the refresh token is stored in Secret %s", who, c.Instance.String(), h.LinkID, s.conn.RefreshTokenSecretName())
	r.revokeSuperseded(ctx, s, c.Instance, superseded, h.LinkID)
	s.handover = nil
	return r.dropHandover(ctx, h.LinkID)
}

// refreshTokenVersion identifies the stored refresh token without
// revealing it: a new authorization changes it, a new link does not.
func refreshTokenVersion(refresh *corev1.Secret) string {
	tok := refresh.Data[snowv1.AuthorizationKeyRefreshToken]
	if len(tok) == 0 {
		return ""
	}
	sum := sha256.Sum256(tok)
	return hex.EncodeToString(sum[:6])
}

// authorizationStatus keeps the AuthorizationCode grant's status current:
// refreshTokenExpiresAt, and the end of an expired link. It returns the
// RefreshTokenExpiring message, "" when the token is not close to
// expiring.
func (r *ServiceNowConnectionReconciler) authorizationStatus(s *scope) string {
	st := &s.conn.Status
	st.AuthorizationURL = ""
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		st.RefreshTokenExpiresAt, st.Authorization = nil, nil
		return ""
	}
	if a := st.Authorization; a != nil && a.LinkExpiresAt != nil {
		if end := a.LinkExpiresAt.Add(authserver.HandoverGrace); s.now.Before(end) {
			s.wake = append(s.wake, end)
		} else {
			a.LinkID, a.LinkExpiresAt = "", nil
		}
	}
	lifespan, before := defaultRefreshTokenLifespan, defaultReauthorizeBefore
	if a := s.conn.Spec.AuthorizationCode; a != nil {
		if a.RefreshTokenLifespan != nil {
			lifespan = a.RefreshTokenLifespan.Duration
		}
		if a.ReauthorizeBefore != nil {
			before = a.ReauthorizeBefore.Duration
		}
	}
	st.RefreshTokenExpiresAt = nil
	if s.refresh == nil || len(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken]) == 0 {
		return ""
	}
	issued, err := time.Parse(time.RFC3339, string(s.refresh.Data[snowv1.AuthorizationKeyIssuedAt]))
	if err != nil {
		return ""
	}
	expires := issued.Add(lifespan)
	st.RefreshTokenExpiresAt = &metav1.Time{Time: expires}
	if warnAt := expires.Add(-before); s.now.Before(warnAt) {
		s.wake = append(s.wake, warnAt)
		return ""
	}
	return fmt.Sprintf("the refresh token stops working at %s: authorise again before then (kubectl servicenow authorize %s)",
		expires.UTC().Format(time.RFC3339), s.conn.Name)
}
