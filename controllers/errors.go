package controllers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// failure is why the latest attempt to obtain or store a token failed, in the
// words a person reads in RefreshFailed. It is an error so that reconcile
// steps can return it; Reconcile records it in status instead of handing it
// to controller-runtime.
type failure struct {
	// reason is the condition reason: a servicenow.Kind or one of the
	// reasons in api/v1alpha1 (CredentialsNotFound, ...).
	reason string
	// message names what to fix: the Secret, the key, the HTTP status and
	// ServiceNow's error. Never a secret value or a response body.
	message string
	// retryable says whether trying again without a change can help.
	retryable bool
	// retryAfter is the server's Retry-After (capped by the client), if it
	// sent one.
	retryAfter time.Duration
}

func (f *failure) Error() string { return f.message }

// needsPerson builds a failure only a person can fix.
func needsPerson(reason, format string, args ...any) *failure {
	return &failure{reason: reason, message: fmt.Sprintf(format, args...)}
}

// classify is the one place that decides what an error means for a
// connection: its reason, and whether retrying without a change can help.
// Errors from the ServiceNow client carry their kind, errors from the
// credentials reader their reason; failures built by the reconcile steps
// pass through; anything else is not a token failure and returns nil (the
// caller hands it to controller-runtime).
func classify(err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	var ce *credentials.Error
	if errors.As(err, &ce) {
		return &failure{reason: ce.Reason, message: ce.Message}
	}
	var se *servicenow.Error
	if errors.As(err, &se) {
		return &failure{
			reason:     string(se.Kind),
			message:    se.Error(),
			retryable:  se.Kind.Retryable(),
			retryAfter: se.RetryAfter,
		}
	}
	return nil
}

// isPrecondition says whether a failure reason is one snowauth finds before
// asking ServiceNow anything: re-checking it costs nothing, so it is
// re-checked on every reconcile rather than backed off. Everything
// ServiceNow answered (RefreshTokenRejected included) goes through the
// backoff, so no watch event sends a rejected request again. InvalidInstance
// is not one of them: ServiceNow answers a redirect or a 404 with it too (an
// instance outside the allowlist waits for the slow retry, a change of the
// credentials, or a refresh request, as a TLSError does).
func isPrecondition(reason string) bool {
	switch reason {
	case snowv1.ReasonCredentialsNotFound, snowv1.ReasonCredentialsInvalid, snowv1.ReasonSecretConflict,
		snowv1.ReasonAuthorizationRequired, snowv1.ReasonAuthorizationServerDisabled:
		return true
	}
	return false
}

// writeFailure turns a refused token-Secret write into a failure. A
// conflict (someone else wrote the Secret, or the cache lagged) is not one:
// it is returned as it is, controller-runtime retries it, and the token
// kept in memory is written then.
func writeFailure(secretName, accessToken string, err error) error {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return err
	}
	return &failure{
		reason: snowv1.ReasonTokenSecretWriteFailed,
		message: fmt.Sprintf("a new token was obtained but the API server refused to write Secret %s (%s: %s); "+
			"snowauth keeps the token in memory and writes it on the next try, without asking ServiceNow again",
			secretName, apierrors.ReasonForError(err), apiMessage(err, accessToken)),
		retryable: true,
	}
}

// maxAPIMessage bounds the part of an API server's message quoted in a
// condition: an admission webhook may answer with anything.
const maxAPIMessage = 300

// apiMessage is an API error's message made safe to show: the token (as
// written and base64-encoded, as it travels in a Secret) removed, printable
// characters only, bounded.
func apiMessage(err error, token string) string {
	msg := err.Error()
	if len(token) >= 4 {
		for _, form := range []string{token, base64.StdEncoding.EncodeToString([]byte(token))} {
			msg = strings.ReplaceAll(msg, form, "[redacted]")
		}
	}
	return bound(printable(msg), maxAPIMessage)
}

// Bounds of what snowauth writes for people: a condition message (the API
// allows 32 KiB, but a status is read in a terminal) and an Event note
// (events.k8s.io drops Events whose note exceeds 1 KiB).
const (
	maxConditionMessage = 1024
	maxEventNote        = 1000
)

// bound cuts s to at most n bytes at a rune boundary, marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// printable replaces control characters (newlines included) with spaces, so
// a message stays one line whatever an error carried.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
}

// failureFromStatus recovers the latest failure from the RefreshFailed
// condition, so a reconcile that makes no token request (waiting out a
// backoff, or a restart) still reports it.
func failureFromStatus(conds []metav1.Condition) *failure {
	c := meta.FindStatusCondition(conds, snowv1.ConditionRefreshFailed)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return &failure{reason: c.Reason, message: c.Message, retryable: retryable(c.Reason)}
}

// retryable says whether trying again without a change can help, for a
// reason recovered from status.
func retryable(reason string) bool {
	switch {
	case reason == snowv1.ReasonTokenSecretWriteFailed:
		return true
	case reason == snowv1.ReasonRefreshTokenRejected, isPrecondition(reason):
		return false
	}
	return servicenow.Kind(reason).Retryable()
}
