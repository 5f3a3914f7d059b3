package install_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// restrictedNamespace creates a test namespace that enforces the restricted
// Pod Security Standard, as config/manager's namespace does.
func restrictedNamespace(t testing.TB) string {
	t.Helper()
	name := env.Namespace(t)
	ns := &corev1.Namespace{}
	g := NewWithT(t)
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Name: name}, ns)).To(Succeed())
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	ns.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	g.Expect(env.Client.Update(context.Background(), ns)).To(Succeed())
	return name
}

// admitManagerPod asks the API server to admit, as a dry run, a Pod made
// from the Deployment's template: envtest runs no controller that would make
// one, but Pod Security admission judges Pods, not Deployments.
func admitManagerPod(ctx context.Context, deployment *unstructured.Unstructured) error {
	raw, err := json.Marshal(deployment.Object)
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: d.Name + "-", Namespace: d.Namespace,
			Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations,
		},
		Spec: d.Spec.Template.Spec,
	}
	return env.Client.Create(ctx, pod, client.DryRunAll)
}

// ensure creates obj unless it exists (fixed names other runs may have made).
func ensure(t testing.TB, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func TestChartInstallsOnAnAPIServerAndItsPodIsRestricted(t *testing.T) {
	installMonitoringCRDs(t)
	for _, tc := range []struct {
		name  string
		args  []string
		kinds []string
	}{
		{"default values", nil, []string{
			"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment",
			"Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
		}},
		{"every option", []string{"--values", allOptionsValues}, []string{
			"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Ingress", "NetworkPolicy",
			"PodDisruptionBudget", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, ctx := NewWithT(t), context.Background()
			// What the every-option values refer to and a cluster has.
			ensure(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
			ensure(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}})
			ensure(t, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "snowauth-ci-critical"}, Value: 1000000})

			ns := restrictedNamespace(t)
			objs := helmTemplate(t, "snowauth", ns, tc.args...)
			// Every kind the chart renders is applied: none is left out
			// for want of a CRD.
			g.Expect(kinds(objs)).To(Equal(tc.kinds))
			deleteAfterTest(t, objs)
			g.Expect(apply(ctx, env.Client, objs)).To(Succeed())
			for _, d := range ofKind(objs, "Deployment") {
				g.Expect(admitManagerPod(ctx, d)).To(Succeed(),
					"the Pods of %s must pass the restricted Pod Security Standard", d.GetName())
			}
		})
	}
}

func TestInstallYAMLInstallsOnAnAPIServerAndItsPodIsRestricted(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	g.Expect(apply(ctx, env.Client, readManifests(t, "dist/install-crds.yaml"))).To(Succeed())
	objs := readManifests(t, "dist/install.yaml")
	g.Expect(kinds(objs)).To(ContainElements(
		"ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "ServiceAccount",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"))
	// Its namespace enforces the restricted standard itself, so the
	// admission below is the one a user's cluster makes.
	g.Expect(only(t, objs, "Namespace").GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))

	deleteAfterTest(t, objs)
	g.Expect(apply(ctx, env.Client, objs)).To(Succeed())
	g.Expect(admitManagerPod(ctx, only(t, objs, "Deployment"))).To(Succeed(),
		"the manager's Pod must pass the restricted Pod Security Standard")

	// The optional NetworkPolicy, in the namespace config/default gives it.
	policy := kustomizeBuild(t, "config/network-policy")
	for _, o := range policy {
		o.SetNamespace("snowauth-system")
	}
	g.Expect(apply(ctx, env.Client, policy)).To(Succeed())
}

func TestDeletingInstallYAMLLeavesTheCRDTheConnectionsAndTheirTokenSecrets(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	crds := readManifests(t, "dist/install-crds.yaml")
	g.Expect(kinds(crds)).To(Equal([]string{"CustomResourceDefinition"}))
	g.Expect(crds[0].GetAnnotations()).To(HaveKeyWithValue("argocd.argoproj.io/sync-options", "Prune=false,Delete=false"),
		"Argo CD does not prune or delete the CRD")
	objs := readManifests(t, "dist/install.yaml")
	g.Expect(kinds(objs)).NotTo(ContainElement("CustomResourceDefinition"))
	g.Expect(apply(ctx, env.Client, crds)).To(Succeed())
	g.Expect(apply(ctx, env.Client, objs)).To(Succeed())

	// A connection and the token Secret it owns, as the manager writes it.
	ns := env.Namespace(t)
	conn := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantClientCredentials, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
	}
	g.Expect(env.Client.Create(ctx, conn)).To(Succeed())
	// Envtest never empties a deleted namespace: remove the connection, so
	// that a later test's cluster-wide operator does not find it.
	t.Cleanup(func() { _ = env.Client.Delete(ctx, conn) })
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-token",
		Labels: map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, snowv1.LabelConnection: "orders"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: snowv1.GroupVersion.String(), Kind: "ServiceNowConnection",
			Name: conn.Name, UID: conn.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
	}, StringData: map[string]string{snowv1.TokenKeyAccessToken: "still-here"}}
	g.Expect(env.Client.Create(ctx, token)).To(Succeed())

	// kubectl delete -f install.yaml. (Not its Namespace: envtest has no
	// namespace controller to finish deleting it, and other tests install
	// there; a Namespace holds no CRD and no other namespace's objects.)
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			g.Expect(client.IgnoreNotFound(env.Client.Delete(ctx, o.DeepCopy()))).To(Succeed(), "deleting %s %s", o.GetKind(), o.GetName())
		}
	}
	crd := crds[0].DeepCopy()
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd)).To(Succeed())
	g.Expect(crd.GetDeletionTimestamp()).To(BeNil(), "the CRD stays")
	g.Consistently(func() error {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(conn), &snowv1.ServiceNowConnection{})
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed(), "the connection stays")
	var kept corev1.Secret
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(token), &kept)).To(Succeed())
	g.Expect(string(kept.Data[snowv1.TokenKeyAccessToken])).To(Equal("still-here"), "the token Secret stays")
}

// The checks above could pass vacuously if envtest's API server did not
// enforce Pod Security or did not validate fields: these show it does.

func TestRestrictedNamespaceRefusesAManagerPodWhoseHardeningWasRemoved(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ set, violation string }{
		{"securityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation != false"},
		{"securityContext.capabilities=null", "unrestricted capabilities"},
		{"podSecurityContext.runAsNonRoot=false", "runAsNonRoot != true"},
		{"podSecurityContext.seccompProfile=null", "seccompProfile"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			g := NewWithT(t)
			ns := restrictedNamespace(t)
			objs := helmTemplate(t, "snowauth", ns, "--set", tc.set)
			g.Expect(apply(ctx, env.Client, ofKind(objs, "ServiceAccount"))).To(Succeed())
			err := admitManagerPod(ctx, only(t, objs, "Deployment"))
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(`violates PodSecurity "restricted:latest"`))
			g.Expect(err.Error()).To(ContainSubstring(tc.violation))
		})
	}
}

func TestAPIServerRefusesAManifestWithASchemaOrAPIVersionMistake(t *testing.T) {
	installMonitoringCRDs(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, kind string
		mistake    func(*unstructured.Unstructured)
		message    string
	}{
		{"a misspelt container field", "Deployment", func(o *unstructured.Unstructured) {
			c := field(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
			c["securityContxt"] = c["securityContext"]
		}, "securityContxt"},
		{"a removed API version", "PodDisruptionBudget", func(o *unstructured.Unstructured) {
			o.SetAPIVersion("policy/v1beta1")
		}, `no matches for kind "PodDisruptionBudget" in version "policy/v1beta1"`},
		{"a misspelt ServiceMonitor field", "ServiceMonitor", func(o *unstructured.Unstructured) {
			e := field(o, "spec", "endpoints").([]any)[0].(map[string]any)
			e["bearerTokenFle"] = e["bearerTokenFile"]
		}, "bearerTokenFle"},
		{"a PrometheusRule with a malformed duration", "PrometheusRule", func(o *unstructured.Unstructured) {
			r := field(o, "spec", "groups").([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
			r["for"] = "5 minutes"
		}, "spec.groups[0].rules[0].for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := env.Namespace(t)
			objs := helmTemplate(t, "snowauth", ns, "--values", allOptionsValues)
			obj := ofKind(objs, tc.kind)[0].DeepCopy()
			tc.mistake(obj)
			err := apply(ctx, env.Client, []*unstructured.Unstructured{obj})
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}
