package authserver

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The hand-over: the authorization server writes what ServiceNow sent to
// the callback into a Secret of its own namespace, named for the link; the
// manager (which alone holds the credentials) exchanges the code, stores
// the refresh token and deletes the Secret. The server may create
// Secrets only there, and the admission policy lets it create nothing but
// these (config/policy).
const (
	// LabelHandover marks a hand-over Secret.
	LabelHandover = "servicenow.snowauth.dev/authorization-callback"
	// Keys of a hand-over Secret: the state, and the code or ServiceNow's
	// error.
	HandoverState = "state"
	HandoverCode  = "code"
	HandoverError = "error"
	// HandoverGrace is how long after its link expires a hand-over is still
	// exchanged: a person who logged in at the last minute is served, and
	// the manager may be retrying a failed exchange.
	HandoverGrace = 5 * time.Minute
)

// HandoverSecretName is the hand-over Secret of a link.
func HandoverSecretName(linkID string) string { return "authorization-" + linkID }

// LinkIDOfHandover is the link a hand-over Secret is named for, "" if the
// name is not a hand-over's.
func LinkIDOfHandover(name string) string {
	id, ok := strings.CutPrefix(name, "authorization-")
	if !ok {
		return ""
	}
	return id
}

// Handover is a verified hand-over.
type Handover struct {
	State  State
	LinkID string
	// Code is the authorization code, or Error what ServiceNow reported.
	Code, Error string
}

// ReadHandover verifies a hand-over Secret: a state snowauth signed, for
// the link the Secret is named for, not expired for longer than
// HandoverGrace.
func ReadHandover(signer *Signer, secret *corev1.Secret, now time.Time) (*Handover, error) {
	if secret.Labels[LabelHandover] == "" {
		return nil, errNoHandover
	}
	st, err := signer.Verify(string(secret.Data[HandoverState]), now.Add(-HandoverGrace))
	if err != nil {
		return nil, fmt.Errorf("the authorization hand-over %s: %w", secret.Name, err)
	}
	id := LinkID(st.Nonce)
	if LinkIDOfHandover(secret.Name) != id {
		return nil, fmt.Errorf("the authorization hand-over %s is not named for its link", secret.Name)
	}
	return &Handover{State: st, LinkID: id, Code: string(secret.Data[HandoverCode]), Error: string(secret.Data[HandoverError])}, nil
}
