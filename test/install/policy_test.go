package install_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	g.Expect(policy).To(HaveLen(2))
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

// config/default's policy must name config/default's manager: kustomize
// cannot template the username in its CEL expression.
func TestConfigPolicyNamesTheManagerOfConfigDefault(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")
	sa := only(t, objs, "ServiceAccount")
	policy := only(t, objs, "ValidatingAdmissionPolicy")
	binding := only(t, objs, "ValidatingAdmissionPolicyBinding")
	g := NewWithT(t)
	g.Expect(field(policy, "spec", "matchConditions")).To(ConsistOf(HaveKeyWithValue("expression",
		"request.userInfo.username == 'system:serviceaccount:"+sa.GetNamespace()+":"+sa.GetName()+"'")))
	g.Expect(field(binding, "spec", "policyName")).To(Equal(policy.GetName()))
}

func TestChartPolicyIsConfigPolicy(t *testing.T) {
	rendered := only(t, helmTemplate(t, "snowauth", "snowauth-system"), "ValidatingAdmissionPolicy")
	tested := only(t, kustomizeBuild(t, "config/default"), "ValidatingAdmissionPolicy")
	for _, f := range []string{"validations", "matchConstraints", "matchConditions", "failurePolicy"} {
		expectSame(t, field(rendered, "spec", f), field(tested, "spec", f), "the chart's policy differs from config/policy's in spec."+f)
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
