package install_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// leaseName is cmd/main.go's LeaderElectionID.
const leaseName = "snowauth.servicenow.snowauth.dev"

// The OAuth client the simulator knows.
const (
	clientID     = "snowauth-install-test"
	clientSecret = "install-test-client-secret"
	appUser      = "svc.snowauth"
)

const (
	eventually = 30 * time.Second
	interval   = 100 * time.Millisecond
)

// rbacKinds are the kinds of an install that grant the manager its rights.
var rbacKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

// installRBAC applies the RBAC objects of a rendering as a cluster
// administrator would, and returns the manager's ServiceAccount name.
func installRBAC(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	var rbac []*unstructured.Unstructured
	for _, k := range rbacKinds {
		rbac = append(rbac, ofKind(objs, k)...)
	}
	deleteAfterTest(t, rbac)
	NewWithT(t).Expect(apply(context.Background(), env.Client, rbac)).To(Succeed())
	return only(t, rbac, "ServiceAccount").GetName()
}

// operator is snowauth's manager running in this process as a
// ServiceAccount: every request it makes impersonates that account, so the
// API server grants it exactly what the install's RBAC grants.
type operator struct {
	t         *testing.T
	namespace string
	// client impersonates the ServiceAccount too: what it is refused, the
	// manager is refused.
	client client.Client
	sim    *simulator.Simulator
	logs   *testenv.SyncBuffer
}

// runAs is a client configuration that impersonates ServiceAccount
// namespace/name.
func runAs(namespace, name string) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + name}
	return cfg
}

// startOperator starts a manager as cmd/main.go builds it, with leader
// election in namespace (the install's namespace), watching watch (nil:
// every namespace), as ServiceAccount namespace/serviceAccount. Its tokens
// come from a ServiceNow simulator that issues tokens for 5 seconds, so a
// refresh follows within seconds.
func startOperator(t *testing.T, namespace, serviceAccount string, watch []string) *operator {
	t.Helper()
	g := NewWithT(t)
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 6 * time.Second, ClientCredentialsEnabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused-app-user-password"})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser})

	tokens := testenv.ClientFor(t, sim, 5*time.Second)

	cfg := runAs(namespace, serviceAccount)
	logs := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs.String())
		}
	})
	env.StartManager(t, testenv.Manager{
		Config: cfg, Namespaces: watch, Tokens: tokens, Logs: logs,
		Options: func(o *ctrl.Options) {
			o.LeaderElection = true
			o.LeaderElectionID = leaseName
			o.LeaderElectionNamespace = namespace
			o.LeaderElectionReleaseOnCancel = true
		},
	})

	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return &operator{t: t, namespace: namespace, client: c, sim: sim, logs: logs}
}

// expectKeepsATokenFresh has a person (the administrator) give a connection
// in namespace ns, and shows the operator makes it Ready, refreshes its
// token, reports an Event and holds the leader Lease: everything it does
// with the API server on a normal day.
func (o *operator) expectKeepsATokenFresh(ns string) {
	o.t.Helper()
	g, ctx := NewWithT(o.t), context.Background()
	instance := o.sim.LocalhostURL()
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
		StringData: map[string]string{"instance": instance, "client_id": clientID, "client_secret": clientSecret},
	})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec: snowv1.ServiceNowConnectionSpec{
			GrantType: snowv1.GrantClientCredentials, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"},
		},
	})).To(Succeed())

	// Envtest has no garbage collector and test namespaces are never
	// emptied: remove the connection so that a later test's cluster-wide
	// operator does not find it.
	o.t.Cleanup(func() {
		_ = env.Client.Delete(ctx, &snowv1.ServiceNowConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}})
	})

	g.Eventually(func() string { return readyOf(ctx, ns, "orders") }, eventually, interval).Should(Equal("True/TokenValid"))
	g.Expect(tokenSecretKey(ctx, ns, "orders-token", snowv1.TokenKeyAccessToken)).NotTo(BeEmpty())
	// ServiceNow answers a refresh with the same access token and a later
	// expiry (as its simulator does): a refresh shows in expires_at.
	expiresAt := func() time.Time {
		t, _ := time.Parse(time.RFC3339, tokenSecretKey(ctx, ns, "orders-token", snowv1.TokenKeyExpiresAt))
		return t
	}
	first := expiresAt()
	g.Expect(first).NotTo(BeZero())
	g.Eventually(expiresAt, eventually, interval).Should(BeTemporally(">", first), "the token was refreshed")
	g.Expect(readyOf(ctx, ns, "orders")).To(Equal("True/TokenValid"))

	g.Eventually(func() []string {
		var events eventsv1.EventList
		g.Expect(env.Client.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
		var reasons []string
		for _, e := range events.Items {
			if e.Regarding.Name == "orders" {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons
	}, eventually, interval).Should(ContainElement("TokenIssued"))

	var lease coordinationv1.Lease
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: leaseName}, &lease)).To(Succeed())
	g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).NotTo(BeEmpty())

	// A refused request that did not stop the manager (one that is only
	// retried) is logged: there must be none.
	g.Expect(o.logs.String()).NotTo(ContainSubstring("forbidden"))
}

// refusal is something the operator must not be able to do.
type refusal struct {
	what string
	do   func(context.Context, client.Client) error
}

// expectRefused shows the API server refuses each of them.
func (o *operator) expectRefused(refusals []refusal) {
	o.t.Helper()
	ctx := context.Background()
	for _, r := range refusals {
		err := r.do(ctx, o.client)
		if !apierrors.IsForbidden(err) {
			o.t.Errorf("the operator may %s: want Forbidden, got %v", r.what, err)
		}
	}
}

// outsideItsJob are requests that the operator, cluster-wide or not, must
// never be allowed to make; ns holds a connection and its token Secret.
func outsideItsJob(ns string) []refusal {
	return []refusal{
		{"delete a token Secret", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-token"}})
		}},
		{"delete a credentials Secret", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}})
		}},
		{"delete a connection", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &snowv1.ServiceNowConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}})
		}},
		// It may patch a connection, for its finalizer (revokeOnDelete):
		// RBAC cannot say which fields; the admission policy refuses a
		// change to the spec (TestManagerCanChangeNothingButItsFinalizerOnAConnection).
		{"create a connection", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &snowv1.ServiceNowConnection{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sneaky"},
				Spec: snowv1.ServiceNowConnectionSpec{
					GrantType: snowv1.GrantClientCredentials, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"},
				},
			})
		}},
		{"read a ConfigMap", func(ctx context.Context, c client.Client) error {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
		}},
		{"list Pods", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &corev1.PodList{})
		}},
		{"create a Deployment", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}})
		}},
		{"bind itself a Role", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
			})
		}},
		{"create a ClusterRole", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "snowauth-install-test-x"}})
		}},
		{"delete the CRD", func(ctx context.Context, c client.Client) error {
			crd := &unstructured.Unstructured{}
			crd.SetAPIVersion("apiextensions.k8s.io/v1")
			crd.SetKind("CustomResourceDefinition")
			crd.SetName("servicenowconnections.servicenow.snowauth.dev")
			return c.Delete(ctx, crd)
		}},
		{"delete a Namespace", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}},
	}
}

func TestChartRBACLetsTheOperatorKeepTokensFreshAndNothingElse(t *testing.T) {
	release := env.Namespace(t)
	sa := installRBAC(t, helmTemplate(t, "snowauth-rbac", release))
	op := startOperator(t, release, sa, nil)

	workload := env.Namespace(t)
	op.expectKeepsATokenFresh(workload)
	op.expectRefused(outsideItsJob(workload))
}

func TestConfigRBACLetsTheOperatorKeepTokensFreshAndNothingElse(t *testing.T) {
	release := env.Namespace(t)
	// config/rbac names namespace "system", which config/default replaces;
	// the test's namespace replaces it here.
	objs := kustomizeBuild(t, "config/rbac")
	for _, o := range objs {
		if o.GetNamespace() != "" {
			o.SetNamespace(release)
		}
		if subjects, ok := o.Object["subjects"].([]any); ok {
			for _, s := range subjects {
				if s := s.(map[string]any); s["kind"] == "ServiceAccount" {
					s["namespace"] = release
				}
			}
		}
	}
	sa := installRBAC(t, objs)
	op := startOperator(t, release, sa, nil)

	workload := env.Namespace(t)
	op.expectKeepsATokenFresh(workload)
	op.expectRefused(outsideItsJob(workload))
}

func TestNamespaceScopedChartKeepsTokensFreshAndCannotReadOtherNamespacesSecrets(t *testing.T) {
	release := env.Namespace(t)
	teamA, teamB, elsewhere := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	watch := []string{teamA, teamB}
	objs := helmTemplate(t, "snowauth-scoped", release, "--set", "watchNamespaces={"+strings.Join(watch, ",")+"}")
	NewWithT(t).Expect(managerArgs(t, objs)).To(ContainElement("--watch-namespaces=" + strings.Join(watch, ",")))
	sa := installRBAC(t, objs)
	op := startOperator(t, release, sa, watch)

	op.expectKeepsATokenFresh(teamB)
	op.expectRefused(outsideItsJob(teamB))
	secretIn := func(ns string) func(context.Context, client.Client) error {
		return func(ctx context.Context, c client.Client) error {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "creds"}, &corev1.Secret{})
		}
	}
	op.expectRefused([]refusal{
		{"read a Secret in an unwatched namespace", secretIn(elsewhere)},
		{"read a Secret in its own namespace", secretIn(release)},
		{"list Secrets in every namespace", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &corev1.SecretList{})
		}},
		{"create a Secret in an unwatched namespace", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: elsewhere, Name: "x"}})
		}},
		{"list connections in every namespace", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &snowv1.ServiceNowConnectionList{})
		}},
	})
	// What it may do in a watched namespace it does with its Role there.
	NewWithT(t).Expect(secretIn(teamA)(context.Background(), op.client)).To(Satisfy(apierrors.IsNotFound),
		"in a watched namespace the operator may read Secrets (there is none named creds in team A)")
}

// readyOf is a connection's Ready status and reason, read as administrator.
func readyOf(ctx context.Context, ns, name string) string {
	var c snowv1.ServiceNowConnection
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
		return err.Error()
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type == snowv1.ConditionReady {
			return string(cond.Status) + "/" + cond.Reason
		}
	}
	return ""
}

// tokenSecretKey is a key of a token Secret, "" without one.
func tokenSecretKey(ctx context.Context, ns, name, key string) string {
	var s corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return ""
	}
	return string(s.Data[key])
}

// OpenShift and hardened clusters run OwnerReferencesPermissionEnforcement
// (testenv enables it): an owner reference with blockOwnerDeletion, which
// snowauth sets on the Secrets it owns, is refused unless the writer may
// update the owner's finalizers.
func TestOperatorOwnsItsSecretsUnderOwnerReferencesPermissionEnforcement(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	release := env.Namespace(t)
	sa := installRBAC(t, helmTemplate(t, "snowauth-ownerrefs", release))
	op := startOperator(t, release, sa, nil)
	workload := env.Namespace(t)

	// The plugin is on: the same ServiceAccount may not block the deletion
	// of an owner whose finalizers it may not update.
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "owner"}}
	g.Expect(env.Client.Create(ctx, owner)).To(Succeed())
	err := op.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: workload, Name: "blocked", Labels: map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, BlockOwnerDeletion: ptr.To(true),
		}},
	}})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("blockOwnerDeletion"))

	op.expectKeepsATokenFresh(workload)
	var secret corev1.Secret
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: workload, Name: "orders-token"}, &secret)).To(Succeed())
	g.Expect(secret.OwnerReferences).To(ConsistOf(HaveField("BlockOwnerDeletion", HaveValue(BeTrue()))))
}
