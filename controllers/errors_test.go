package controllers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

func TestWriteFailure(t *testing.T) {
	secrets := schema.GroupResource{Resource: "secrets"}
	const token = "the-access-token-0123456789"
	t.Run("names the Secret and quotes the API server's refusal", func(t *testing.T) {
		g := NewWithT(t)
		err := apierrors.NewForbidden(secrets, "orders-token", errors.New("denied by policy freeze: Secrets are frozen"))
		f := classify(writeFailure("orders-token", token, err))
		g.Expect(f).NotTo(BeNil())
		g.Expect(f.reason).To(Equal(snowv1.ReasonTokenSecretWriteFailed))
		g.Expect(f.retryable).To(BeTrue(), "a retry writes the kept token; it costs ServiceNow nothing")
		g.Expect(f.message).To(ContainSubstring("orders-token"))
		g.Expect(f.message).To(ContainSubstring("Secrets are frozen"))
		g.Expect(f.message).To(ContainSubstring("Forbidden"))
	})
	t.Run("leaves a conflict to controller-runtime's retry", func(t *testing.T) {
		g := NewWithT(t)
		err := apierrors.NewConflict(secrets, "orders-token", errors.New("the object has been modified"))
		g.Expect(classify(writeFailure("orders-token", token, err))).To(BeNil())
		g.Expect(classify(writeFailure("orders-token", token, apierrors.NewAlreadyExists(secrets, "orders-token")))).To(BeNil())
	})
	t.Run("never quotes the token from a webhook that echoes it, and stays short", func(t *testing.T) {
		g := NewWithT(t)
		echo := "webhook saw data.access_token=" + token + " (" + base64.StdEncoding.EncodeToString([]byte(token)) + ")\n\x1b[31m" +
			strings.Repeat("é", 5000)
		f := classify(writeFailure("orders-token", token, apierrors.NewBadRequest(echo)))
		g.Expect(f.message).NotTo(ContainSubstring(token))
		g.Expect(f.message).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString([]byte(token))))
		g.Expect(strings.ContainsFunc(f.message, unicode.IsControl)).To(BeFalse())
		g.Expect(len(f.message)).To(BeNumerically("<", 700))
		g.Expect(utf8.ValidString(f.message)).To(BeTrue())
	})
}

func TestBound(t *testing.T) {
	g := NewWithT(t)
	g.Expect(bound("short", 10)).To(Equal("short"))
	long := bound(strings.Repeat("ü", 100), 51)
	g.Expect(len(long)).To(BeNumerically("<=", 51))
	g.Expect(utf8.ValidString(long)).To(BeTrue(), "cut at a rune boundary")
	g.Expect(long).To(HaveSuffix("…"))
	g.Expect(printable("a\nb\x00c\td")).To(Equal("a b c d"))
}

func TestConditionMessagesAndEventNotesAreBounded(t *testing.T) {
	g := NewWithT(t)
	huge := &failure{reason: "InvalidResponse", message: strings.Repeat("x", 40_000) + "\n"}
	for _, c := range conditions(statusInput{now: t0, secretName: "orders-token", failure: huge}) {
		g.Expect(len(c.Message)).To(BeNumerically("<=", maxConditionMessage), c.Type)
		g.Expect(c.Message).NotTo(ContainSubstring("\n"))
	}
	g.Expect(maxEventNote).To(BeNumerically("<=", 1024), "events.k8s.io drops notes over 1 KiB")
}

func TestClassify(t *testing.T) {
	client, err := servicenow.NewClient(servicenow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, notAllowed := client.ResolveInstance("https://servicenow.example.com")
	if notAllowed == nil {
		t.Fatal("an instance outside the allowlist must be refused")
	}
	missingKey := needsPerson(snowv1.ReasonCredentialsInvalid, "credentials Secret %s has no key %q", "snow-creds", "client_secret")

	for _, tc := range []struct {
		name string
		err  error
		want *failure
	}{
		{
			name: "reports a ServiceNow outage by its kind, to be retried",
			err:  &servicenow.Error{Kind: servicenow.KindInstanceUnavailable, StatusCode: 503},
			want: &failure{reason: "InstanceUnavailable", retryable: true},
		},
		{
			name: "keeps the rate limit's Retry-After",
			err:  &servicenow.Error{Kind: servicenow.KindRateLimited, StatusCode: 429, RetryAfter: 2 * time.Minute},
			want: &failure{reason: "RateLimited", retryable: true, retryAfter: 2 * time.Minute},
		},
		{
			name: "reports rejected credentials as needing a person",
			err:  &servicenow.Error{Kind: servicenow.KindAuthenticationFailed, StatusCode: 401, OAuthError: "access_denied"},
			want: &failure{reason: "AuthenticationFailed", retryable: false},
		},
		{
			name: "reports an untrusted certificate as needing a person",
			err:  &servicenow.Error{Kind: servicenow.KindTLSError},
			want: &failure{reason: "TLSError", retryable: false},
		},
		{
			name: "reports a hibernating developer instance as retryable",
			err:  &servicenow.Error{Kind: servicenow.KindInstanceHibernating, StatusCode: 200},
			want: &failure{reason: "InstanceHibernating", retryable: true},
		},
		{
			name: "reports an instance outside the allowlist with the client's own message",
			err:  notAllowed,
			want: &failure{reason: "InvalidInstance", message: notAllowed.Error(), retryable: false},
		},
		{
			name: "finds a ServiceNow error wrapped by a caller",
			err:  fmt.Errorf("requesting a token: %w", &servicenow.Error{Kind: servicenow.KindTimeout}),
			want: &failure{reason: "Timeout", retryable: true},
		},
		{
			name: "passes a failure found by a reconcile step through unchanged",
			err:  missingKey,
			want: missingKey,
		},
		{
			name: "passes a wrapped failure through unchanged",
			err:  fmt.Errorf("step: %w", missingKey),
			want: missingKey,
		},
		{
			name: "leaves an API server error to controller-runtime",
			err:  apierrors.NewConflict(schema.GroupResource{Group: "servicenow.snowauth.dev", Resource: "servicenowconnections"}, "snow", errors.New("the object has been modified")),
			want: nil,
		},
		{name: "leaves a plain error to controller-runtime", err: errors.New("connection reset"), want: nil},
		{name: "finds no failure in no error", err: nil, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := classify(tc.err)
			if tc.want == nil {
				g.Expect(got).To(BeNil())
				return
			}
			g.Expect(got).NotTo(BeNil())
			var se *servicenow.Error
			if errors.As(tc.err, &se) {
				g.Expect(got.reason).To(Equal(string(se.Kind)))
				g.Expect(got.retryable).To(Equal(se.Kind.Retryable()))
				g.Expect(got.retryAfter).To(Equal(se.RetryAfter))
				g.Expect(got.message).To(Equal(se.Error()))
			}
			if tc.want.message != "" {
				g.Expect(got.message).To(Equal(tc.want.message))
			}
			g.Expect(got.reason).To(Equal(tc.want.reason))
			g.Expect(got.retryable).To(Equal(tc.want.retryable))
			g.Expect(got.retryAfter).To(Equal(tc.want.retryAfter))
		})
	}

	t.Run("returns the very failure a step built", func(t *testing.T) {
		NewWithT(t).Expect(classify(fmt.Errorf("step: %w", missingKey))).To(BeIdenticalTo(missingKey))
	})
}

func TestFailureFromStatus(t *testing.T) {
	ready := metav1.Condition{Type: snowv1.ConditionReady, Status: metav1.ConditionTrue, Reason: snowv1.ReasonTokenValid, Message: "m"}
	refreshFailed := func(reason, msg string) metav1.Condition {
		return metav1.Condition{Type: snowv1.ConditionRefreshFailed, Status: metav1.ConditionTrue, Reason: reason, Message: msg}
	}

	for _, tc := range []struct {
		name  string
		conds []metav1.Condition
		want  *failure
	}{
		{name: "finds no failure on a connection nobody has looked at", conds: nil, want: nil},
		{name: "finds no failure when the last refresh succeeded", conds: []metav1.Condition{ready}, want: nil},
		{
			name: "finds no failure in a RefreshFailed condition that is not True",
			conds: []metav1.Condition{ready, {Type: snowv1.ConditionRefreshFailed, Status: metav1.ConditionFalse,
				Reason: "InstanceUnavailable", Message: "old"}},
			want: nil,
		},
		{
			name:  "recovers a transient failure as one to retry, so a backoff survives a restart",
			conds: []metav1.Condition{ready, refreshFailed("InstanceUnavailable", "the instance is unavailable (HTTP 503)")},
			want:  &failure{reason: "InstanceUnavailable", message: "the instance is unavailable (HTTP 503)", retryable: true},
		},
		{
			name:  "recovers a rate limit as one to retry",
			conds: []metav1.Condition{refreshFailed("RateLimited", "ServiceNow is rate limiting requests")},
			want:  &failure{reason: "RateLimited", message: "ServiceNow is rate limiting requests", retryable: true},
		},
		{
			name:  "recovers rejected credentials as needing a person",
			conds: []metav1.Condition{ready, refreshFailed("AuthenticationFailed", "ServiceNow rejected the credentials")},
			want:  &failure{reason: "AuthenticationFailed", message: "ServiceNow rejected the credentials", retryable: false},
		},
		{
			name:  "recovers an instance outside the allowlist as needing a person",
			conds: []metav1.Condition{refreshFailed("InvalidInstance", "invalid instance: not allowed")},
			want:  &failure{reason: "InvalidInstance", message: "invalid instance: not allowed", retryable: false},
		},
		// The reasons snowauth finds itself before asking ServiceNow are not
		// servicenow.Kinds: they must come back as needing a person too.
		{
			name:  "recovers a missing credentials Secret as needing a person",
			conds: []metav1.Condition{refreshFailed(snowv1.ReasonCredentialsNotFound, "credentials Secret snow-creds not found")},
			want:  &failure{reason: snowv1.ReasonCredentialsNotFound, message: "credentials Secret snow-creds not found", retryable: false},
		},
		{
			name:  "recovers a missing credentials key as needing a person",
			conds: []metav1.Condition{refreshFailed(snowv1.ReasonCredentialsInvalid, `credentials Secret snow-creds has no key "client_secret"`)},
			want:  &failure{reason: snowv1.ReasonCredentialsInvalid, message: `credentials Secret snow-creds has no key "client_secret"`, retryable: false},
		},
		{
			name:  "recovers a refused token Secret write as one to retry: the retry writes the kept token",
			conds: []metav1.Condition{ready, refreshFailed(snowv1.ReasonTokenSecretWriteFailed, "the API server refused to write Secret snow-token")},
			want:  &failure{reason: snowv1.ReasonTokenSecretWriteFailed, message: "the API server refused to write Secret snow-token", retryable: true},
		},
		{
			name:  "recovers a rejected refresh token as needing a person",
			conds: []metav1.Condition{refreshFailed(snowv1.ReasonRefreshTokenRejected, "ServiceNow rejected the stored refresh token")},
			want:  &failure{reason: snowv1.ReasonRefreshTokenRejected, message: "ServiceNow rejected the stored refresh token", retryable: false},
		},
		{
			name:  "recovers a token Secret name conflict as needing a person",
			conds: []metav1.Condition{refreshFailed(snowv1.ReasonSecretConflict, "Secret snow-token already exists")},
			want:  &failure{reason: snowv1.ReasonSecretConflict, message: "Secret snow-token already exists", retryable: false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := failureFromStatus(tc.conds)
			if tc.want == nil {
				g.Expect(got).To(BeNil())
				return
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}
