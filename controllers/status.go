package controllers

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
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
	// retryAfter is the server's Retry-After, if it sent one.
	retryAfter time.Duration
}

func (f *failure) Error() string { return f.message }

// needsPerson builds a failure only a person can fix.
func needsPerson(reason, format string, args ...any) *failure {
	return &failure{reason: reason, message: fmt.Sprintf(format, args...)}
}

// classify is the one place that decides what an error means for a
// connection: its reason, and whether retrying without a change can help.
// Errors from the ServiceNow client carry their kind; failures built by the
// reconcile steps pass through; anything else is not a token failure and
// returns nil (the caller hands it to controller-runtime).
func classify(err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
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

// failureFromStatus recovers the latest failure from the RefreshFailed
// condition, so a reconcile that makes no token request (waiting out a
// backoff, or a restart) still reports it.
func failureFromStatus(conds []metav1.Condition) *failure {
	c := meta.FindStatusCondition(conds, snowv1.ConditionRefreshFailed)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return &failure{
		reason:    c.Reason,
		message:   c.Message,
		retryable: !isPrecondition(c.Reason) && servicenow.Kind(c.Reason).Retryable(),
	}
}

// statusInput is everything the conditions depend on.
type statusInput struct {
	now        time.Time
	generation int64
	suspended  bool
	// secretName is the token Secret's name.
	secretName string
	// expiry is when the token in the token Secret expires; nil when the
	// Secret holds no token snowauth wrote.
	expiry *time.Time
	// failure is the latest attempt's failure; nil when it succeeded or no
	// attempt was made yet.
	failure *failure
	// reauthorize, when not empty, says the refresh token of the
	// AuthorizationCode grant expires soon (RefreshTokenExpiring).
	reauthorize string
}

// conditions computes the connection's conditions: Ready always, and
// RefreshFailed, Stalled and Reconciling only while they are true. Messages
// hold absolute times, never "in 5m", so an unchanged state writes nothing.
func conditions(in statusInput) []metav1.Condition {
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: in.generation, LastTransitionTime: metav1.NewTime(in.now),
		}
	}
	valid := in.expiry != nil && in.now.Before(*in.expiry)
	f := in.failure

	var ready metav1.Condition
	switch {
	case in.suspended:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonSuspended,
			"refreshing is suspended (spec.suspend is true); the token Secret is left as it is")
	case valid:
		ready = cond(snowv1.ConditionReady, metav1.ConditionTrue, snowv1.ReasonTokenValid,
			fmt.Sprintf("Secret %s holds a token valid until %s", in.secretName, in.expiry.UTC().Format(time.RFC3339)))
	case in.expiry != nil:
		msg := fmt.Sprintf("the token in Secret %s expired at %s", in.secretName, in.expiry.UTC().Format(time.RFC3339))
		if f != nil {
			msg += "; the last refresh failed: " + f.message
		}
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonTokenExpired, msg)
	case f != nil:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, f.reason, f.message)
	default:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonProgressing, "requesting a first token")
	}
	out := []metav1.Condition{ready}
	if in.suspended {
		return out
	}

	if f != nil {
		out = append(out, cond(snowv1.ConditionRefreshFailed, metav1.ConditionTrue, f.reason, f.message))
		if f.retryable {
			out = append(out, cond(snowv1.ConditionReconciling, metav1.ConditionTrue, f.reason, "retrying: "+f.message))
		} else {
			out = append(out, cond(snowv1.ConditionStalled, metav1.ConditionTrue, f.reason, f.message))
		}
	} else if in.expiry == nil {
		out = append(out, cond(snowv1.ConditionReconciling, metav1.ConditionTrue, snowv1.ReasonProgressing, "requesting a first token"))
	}
	if in.reauthorize != "" {
		out = append(out, cond(snowv1.ConditionRefreshTokenExpiring, metav1.ConditionTrue, snowv1.ReasonRefreshTokenExpiresSoon, in.reauthorize))
	}
	return out
}

// setConditions makes conn's conditions the desired ones: it adds or updates
// each (keeping LastTransitionTime when the status did not change) and
// removes the abnormal-true types that are not desired.
func setConditions(conds *[]metav1.Condition, desired []metav1.Condition) {
	for _, t := range []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling, snowv1.ConditionRefreshTokenExpiring} {
		if meta.FindStatusCondition(desired, t) == nil {
			meta.RemoveStatusCondition(conds, t)
		}
	}
	for _, c := range desired {
		meta.SetStatusCondition(conds, c)
	}
}
