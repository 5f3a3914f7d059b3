package install_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

var snowauthLabels = map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue}

// The manager may create and update Secrets: with the shipped
// ValidatingAdmissionPolicy, only Secrets of snowauth's shape.
func TestManagerCannotUseItsSecretRightsToEscalate(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	release := env.Namespace(t)
	objs := helmTemplate(t, "snowauth-policy", release)
	sa := installRBAC(t, objs)
	policy := append(ofKind(objs, "ValidatingAdmissionPolicy"), ofKind(objs, "ValidatingAdmissionPolicyBinding")...)
	g.Expect(policy).To(HaveLen(4), "the Secrets' and the connections' policies, and their bindings")
	deleteAfterTest(t, policy)
	g.Expect(apply(ctx, env.Client, policy)).To(Succeed())
	op := startOperator(t, release, sa, nil)
	workload := env.Namespace(t)

	// A service-account-token Secret would mint a token for any
	// ServiceAccount: refused (once the API server has the policy).
	g.Eventually(func() error {
		return op.client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "sa-token", Labels: snowauthLabels,
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type: corev1.SecretTypeServiceAccountToken,
		})
	}, eventually, interval).Should(MatchError(ContainSubstring("may write only Opaque Secrets")))

	g.Expect(op.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "unlabelled"}})).
		To(MatchError(ContainSubstring("only Secrets labelled app.kubernetes.io/managed-by=snowauth")))

	// Someone else's Secret cannot be taken over by labelling it...
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "theirs"}, StringData: map[string]string{"k": "v"}}
	g.Expect(env.Client.Create(ctx, theirs)).To(Succeed())
	g.Expect(op.client.Get(ctx, client.ObjectKeyFromObject(theirs), theirs)).To(Succeed())
	theirs.Labels = snowauthLabels
	g.Expect(op.client.Update(ctx, theirs)).To(MatchError(ContainSubstring("may not take over, retype or relabel")))

	// ...and snowauth's own cannot lose its label.
	ours := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "ours", Labels: snowauthLabels}}
	g.Expect(op.client.Create(ctx, ours)).To(Succeed(), "a Secret of snowauth's shape is allowed")
	ours.Labels = map[string]string{"app.kubernetes.io/managed-by": "someone-else"}
	g.Expect(op.client.Update(ctx, ours)).To(MatchError(ContainSubstring("labelled app.kubernetes.io/managed-by=snowauth")))

	// What snowauth itself writes passes.
	op.expectKeepsATokenFresh(workload)
}

// The manager may patch connections to add and remove its finalizer
// (spec.revokeOnDelete): with the shipped ValidatingAdmissionPolicy, that
// and nothing else.
func TestManagerCanChangeNothingButItsFinalizerOnAConnection(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	release := env.Namespace(t)
	objs := helmTemplate(t, "snowauth-conns", release)
	sa := installRBAC(t, objs)
	policy := append(ofKind(objs, "ValidatingAdmissionPolicy"), ofKind(objs, "ValidatingAdmissionPolicyBinding")...)
	deleteAfterTest(t, policy)
	g.Expect(apply(ctx, env.Client, policy)).To(Succeed())
	op := startOperator(t, release, sa, nil)
	workload := env.Namespace(t)
	conn := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "orders", Labels: map[string]string{"team": "a"},
			Finalizers: []string{"example.com/theirs"}},
		Spec: snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantClientCredentials,
			CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
	}
	g.Expect(env.Client.Create(ctx, conn)).To(Succeed())
	t.Cleanup(func() {
		_ = env.Client.Delete(ctx, conn)
		_ = env.Client.Patch(ctx, conn, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
	})
	patch := func(body string) error {
		return op.client.Patch(ctx, &snowv1.ServiceNowConnection{ObjectMeta: metav1.ObjectMeta{Namespace: workload, Name: "orders"}},
			client.RawPatch(types.MergePatchType, []byte(body)))
	}

	// Each try changes the spec anew, until the API server has the policy.
	tries := 0
	g.Eventually(func() error {
		tries++
		return patch(fmt.Sprintf(`{"spec":{"refreshBefore":"%dm"}}`, 1+tries%1000))
	}, eventually, interval).Should(MatchError(ContainSubstring("may not change a connection's spec")))
	g.Expect(patch(`{"metadata":{"labels":{"team":"b"}}}`)).To(MatchError(ContainSubstring("may not change a connection's labels")))
	g.Expect(patch(`{"metadata":{"annotations":{"servicenow.snowauth.dev/refresh-requested-at":"now"}}}`)).
		To(MatchError(ContainSubstring("annotations")))
	g.Expect(patch(`{"metadata":{"finalizers":[]}}`)).To(MatchError(ContainSubstring("only its own finalizer")), "someone else's finalizer")
	g.Expect(patch(`{"metadata":{"finalizers":["example.com/theirs","servicenow.snowauth.dev/revoke"]}}`)).To(Succeed())
	g.Expect(patch(`{"metadata":{"finalizers":["example.com/theirs"]}}`)).To(Succeed())

	// What snowauth itself writes passes: with revokeOnDelete, its finalizer.
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(conn), conn)).To(Succeed())
	p := client.MergeFrom(conn.DeepCopy())
	conn.Spec.RevokeOnDelete = true
	g.Expect(env.Client.Patch(ctx, conn, p)).To(Succeed())
	g.Eventually(func() []string {
		got := &snowv1.ServiceNowConnection{}
		_ = env.Client.Get(ctx, client.ObjectKeyFromObject(conn), got)
		return got.Finalizers
	}, eventually, interval).Should(ConsistOf("example.com/theirs", snowv1.FinalizerRevoke))
	g.Expect(op.logs.String()).NotTo(ContainSubstring("Forbidden"))
}

// config/default's policies must name config/default's manager: kustomize
// cannot template the username in their CEL expressions.
func TestConfigPolicyNamesTheManagerOfConfigDefault(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")
	sa := only(t, objs, "ServiceAccount")
	policies, bindings := ofKind(objs, "ValidatingAdmissionPolicy"), ofKind(objs, "ValidatingAdmissionPolicyBinding")
	g := NewWithT(t)
	g.Expect(policies).To(HaveLen(2), "Secrets and connections")
	g.Expect(bindings).To(HaveLen(len(policies)))
	var names []any
	for _, policy := range policies {
		g.Expect(field(policy, "spec", "matchConditions")).To(ConsistOf(HaveKeyWithValue("expression",
			"request.userInfo.username == 'system:serviceaccount:"+sa.GetNamespace()+":"+sa.GetName()+"'")), policy.GetName())
		names = append(names, policy.GetName())
	}
	for _, binding := range bindings {
		g.Expect(names).To(ContainElement(field(binding, "spec", "policyName")), binding.GetName())
	}
}

func TestChartPolicyIsConfigPolicy(t *testing.T) {
	tested := map[string]*unstructured.Unstructured{}
	for _, o := range ofKind(kustomizeBuild(t, "config/default"), "ValidatingAdmissionPolicy") {
		tested[o.GetName()] = o
	}
	rendered := ofKind(helmTemplate(t, "snowauth", "snowauth-system"), "ValidatingAdmissionPolicy")
	NewWithT(t).Expect(rendered).To(HaveLen(len(tested)))
	for _, o := range rendered {
		want, ok := tested[o.GetName()]
		if !ok {
			t.Fatalf("the chart's policy %s is not in config/policy", o.GetName())
		}
		for _, f := range []string{"validations", "matchConstraints", "matchConditions", "failurePolicy"} {
			expectSame(t, field(o, "spec", f), field(want, "spec", f), "the chart's policy "+o.GetName()+" differs from config/policy's in spec."+f)
		}
	}
	off := helmTemplate(t, "snowauth", "snowauth-system", "--set", "admissionPolicy.enable=false")
	NewWithT(t).Expect(ofKind(off, "ValidatingAdmissionPolicy")).To(BeEmpty())
}

// config/authorization's policy names its authorization server's
// ServiceAccount, and says what the chart's says.
func TestConfigAuthorizationPolicyNamesItsServerAndIsTheCharts(t *testing.T) {
	g := NewWithT(t)
	objs := kustomizeBuild(t, "test/install/testdata/authorization")
	var sa, policy *unstructured.Unstructured
	for _, o := range ofKind(objs, "ServiceAccount") {
		if o.GetName() == "snowauth-authorization" {
			sa = o
		}
	}
	for _, o := range ofKind(objs, "ValidatingAdmissionPolicy") {
		if o.GetName() == "snowauth-authorization-secrets" {
			policy = o
		}
	}
	g.Expect(sa).NotTo(BeNil())
	g.Expect(policy).NotTo(BeNil())
	g.Expect(field(policy, "spec", "matchConditions")).To(ConsistOf(HaveKeyWithValue("expression",
		"request.userInfo.username == 'system:serviceaccount:"+sa.GetNamespace()+":"+sa.GetName()+"'")))
	var server *unstructured.Unstructured
	for _, d := range ofKind(objs, "Deployment") {
		if d.GetName() == "snowauth-authorization" {
			server = d
		}
	}
	g.Expect(field(server, "spec", "template", "spec", "serviceAccountName")).To(Equal(sa.GetName()))
	g.Expect(admitManagerPod(context.Background(), server)).To(Succeed(), "the server's Pod passes the restricted Pod Security Standard")

	rendered := helmTemplate(t, "snowauth", "snowauth-system", "--set", "authorization.enable=true",
		"--set", "authorization.externalURL=https://snowauth.example.com")
	for _, o := range ofKind(rendered, "ValidatingAdmissionPolicy") {
		if o.GetName() == "snowauth-authorization-secrets" {
			for _, f := range []string{"validations", "matchConstraints", "failurePolicy"} {
				expectSame(t, field(o, "spec", f), field(policy, "spec", f), "the chart's policy differs from config/authorization's in spec."+f)
			}
			return
		}
	}
	t.Fatal("the chart renders no authorization server policy")
}
