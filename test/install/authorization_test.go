package install_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// A person authorises a connection through the chart's two components, each
// running as its own ServiceAccount with the chart's RBAC and admission
// policies: the manager mints the link and exchanges the code, the
// authorization server hands it over. The authorization server reads no
// Secret, and may create none but its hand-overs. The same two publish a
// JWTBearer connection's managed key, which the instance fetches from the
// authorization server.
func TestAuthorizationServerHoldsNoCredentialsAndBothItsFlowsWorkWithTheChartsRights(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	release, workload := env.Namespace(t), env.Namespace(t)
	// Namespaced (watchNamespaces): the manager's rights come from Roles,
	// and the hand-overs' namespace must be covered too.
	objs := helmTemplate(t, "snowauth-auth", release, "--set", "authorization.enable=true",
		"--set", "authorization.externalURL=https://snowauth.example.com", "--set", "watchNamespaces[0]="+workload)
	var rbac []*unstructured.Unstructured
	for _, k := range rbacKinds {
		rbac = append(rbac, ofKind(objs, k)...)
	}
	policies := append(ofKind(objs, "ValidatingAdmissionPolicy"), ofKind(objs, "ValidatingAdmissionPolicyBinding")...)
	g.Expect(policies).To(HaveLen(6), "the manager's two and the authorization server's")
	deleteAfterTest(t, append(rbac, policies...))
	g.Expect(apply(ctx, env.Client, append(rbac, policies...))).To(Succeed())
	const managerSA, serverSA = "snowauth-auth-controller-manager", "snowauth-auth-authorization"

	// The authorization server's rights, seen by the API server.
	server, err := client.New(runAs(release, serverSA), client.Options{Scheme: env.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	handover := func(ns, name string, typ corev1.SecretType, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Type: typ}
	}
	handoverLabels := map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, authserver.LabelHandover: "true"}
	g.Eventually(func() error {
		saToken := handover(release, "authorization-sa", corev1.SecretTypeServiceAccountToken, handoverLabels)
		saToken.Annotations = map[string]string{corev1.ServiceAccountNameKey: managerSA}
		return server.Create(ctx, saToken)
	}, eventually, interval).Should(MatchError(ContainSubstring("may only create its hand-over Secrets")),
		"a service-account-token Secret would give the Internet-facing server a ServiceAccount's powers")
	g.Expect(server.Create(ctx, handover(release, "unlabelled", corev1.SecretTypeOpaque, nil))).
		To(MatchError(ContainSubstring("may only create its hand-over Secrets")))
	for what, err := range map[string]error{
		"read a Secret of its namespace": server.Get(ctx, client.ObjectKey{Namespace: release, Name: "snowauth-authorization-key"}, &corev1.Secret{}),
		"list Secrets":                   server.List(ctx, &corev1.SecretList{}, client.InNamespace(workload)),
		"create a Secret elsewhere":      server.Create(ctx, handover(workload, "authorization-x", corev1.SecretTypeOpaque, handoverLabels)),
		"update a connection":            server.Update(ctx, &snowv1.ServiceNowConnection{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "x"}}),
	} {
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the authorization server may %s: %v", what, err)
	}

	// The two components.
	jwksTrust := x509.NewCertPool()
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 30 * time.Minute,
		JWKSClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: jwksTrust, MinVersion: tls.VersionTLS12}}}})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: "jane.doe", Password: "jane-password"})
	web := httptest.NewUnstartedServer(nil)
	web.StartTLS()
	t.Cleanup(web.Close)
	jwksTrust.AddCert(web.Certificate())
	external, err := authserver.ParseExternalURL(web.URL)
	g.Expect(err).NotTo(HaveOccurred())
	managerClient, err := client.New(runAs(release, managerSA), client.Options{Scheme: env.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error {
		return authserver.EnsureKeySecret(ctx, managerClient, managerClient, release, "snowauth-authorization-key")
	}, eventually, interval).Should(Succeed(), "the manager creates the key Secret")
	// The manager reads the keys through the API; the server from files,
	// as the kubelet mounts the Secret for it.
	links := &authserver.Links{Keys: authserver.KeysFromSecret(managerClient, release, "snowauth-authorization-key"), ExternalURL: external}
	keySecret := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: release, Name: "snowauth-authorization-key"}, keySecret)).To(Succeed())
	keyDir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(keyDir, authserver.KeyField), keySecret.Data[authserver.KeyField], 0o600)).To(Succeed())
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, RedirectURL: links.RedirectURI(),
		JWT: &simulator.JWTVerifier{JWKSURL: links.JWKSURL(workload, "inventory")}})
	web.Config.Handler = (&authserver.Server{
		Reader: server, Writer: server, Namespace: release,
		Links:     &authserver.Links{Keys: authserver.KeysFromDir(keyDir), ExternalURL: external},
		Instances: testenv.ClientFor(t, sim, 5*time.Second), Poll: 100 * time.Millisecond, Wait: 20 * time.Second,
	}).Handler()
	logs := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs)
		}
	})
	env.StartManager(t, testenv.Manager{
		Config: runAs(release, managerSA), Namespaces: []string{workload}, Tokens: testenv.ClientFor(t, sim, 5*time.Second),
		Authorization: &controllers.Authorization{Links: links, Namespace: release}, Logs: logs,
	})

	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "creds"},
		StringData: map[string]string{"instance": sim.LocalhostURL(), "client_id": clientID, "client_secret": clientSecret},
	})).To(Succeed())
	conn := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "catalog", Annotations: map[string]string{
			snowv1.AnnotationAuthorizationRequestedAt: "first",
		}},
		Spec: snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantAuthorizationCode, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
	}
	g.Expect(env.Client.Create(ctx, conn)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, conn) })
	// As kubectl servicenow authorize does: the link once status names it.
	var link string
	g.Eventually(func() string {
		c := &snowv1.ServiceNowConnection{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(conn), c); err != nil || c.Status.Authorization == nil ||
			c.Status.Authorization.LinkID == "" {
			return ""
		}
		s := &corev1.Secret{}
		_ = env.Client.Get(ctx, client.ObjectKey{Namespace: workload, Name: c.Status.Authorization.LinkSecretName}, s)
		link = string(s.Data[snowv1.AuthorizationKeyURL])
		return link
	}, eventually, interval).ShouldNot(BeEmpty(), "the manager made a link")

	// A person's browser: the page, going on, ServiceNow's login, the
	// callback.
	pool := sim.CertPool()
	pool.AddCert(web.Certificate())
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	state, _ := url.Parse(link)
	resp, err := browser.PostForm(external.String()+"/authorize", url.Values{"state": {state.Query().Get("state")}})
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusSeeOther))
	callback, err := sim.Login(ctx, browser, resp.Header.Get("Location"), "jane.doe", "jane-password", true)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err = browser.Get(callback.String())
	g.Expect(err).NotTo(HaveOccurred())
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	g.Expect(string(body)).To(ContainSubstring("is authorised by ServiceNow user jane.doe"))
	g.Eventually(func() string { return readyOf(ctx, workload, "catalog") }, eventually, interval).Should(Equal("True/TokenValid"))
	g.Expect(logs.String()).NotTo(ContainSubstring("forbidden"))

	// The JWTBearer grant: the manager makes and keeps the key, the
	// authorization server publishes it, the instance verifies with it.
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "jwt-creds"},
		StringData: map[string]string{"instance": sim.LocalhostURL(), "client_id": clientID, "client_secret": clientSecret, "username": "jane.doe"},
	})).To(Succeed())
	jwtConn := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "inventory"},
		Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantJWTBearer, CredentialsSecretRef: snowv1.SecretReference{Name: "jwt-creds"}},
	}
	g.Expect(env.Client.Create(ctx, jwtConn)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, jwtConn) })
	g.Eventually(func() string { return readyOf(ctx, workload, "inventory") }, eventually, interval).Should(Equal("True/TokenValid"))
	g.Expect(sim.JWKSFetches(links.JWKSURL(workload, "inventory"))).To(BeNumerically(">=", 1), "verified through the published JWKS")
	g.Expect(logs.String()).NotTo(ContainSubstring("forbidden"))
}
