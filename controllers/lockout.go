package controllers

import (
	"fmt"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// No lock-outs: ServiceNow locks an account after repeated failed logins,
// so a wrong password is not sent again and again. After
// spec.password.maxRejections rejections in a row the reconciler stops
// sending it (refreshTrigger asks passwordStopped) until a person changes
// something: the credentials Secret, the spec, or a refresh request, each
// of which is worth one more try.

const defaultMaxRejections = 3

func maxRejections(conn *snowv1.ServiceNowConnection) int32 {
	if p := conn.Spec.Password; p != nil && p.MaxRejections != nil {
		return *p.MaxRejections
	}
	return defaultMaxRejections
}

// passwordStopped says snowauth has stopped sending the password.
func passwordStopped(s *scope) bool {
	return s.conn.Spec.GrantType == snowv1.GrantPassword && s.failure != nil &&
		s.failure.reason == string(servicenow.KindAuthenticationFailed) &&
		s.conn.Status.PasswordRejections >= maxRejections(s.conn)
}

// countRejection records a failed token request of the Password grant:
// one more rejection in a row, or none. At the limit no retry is planned
// and the failure says why and what to do.
func countRejection(s *scope, f *failure) {
	st := &s.conn.Status
	if s.conn.Spec.GrantType != snowv1.GrantPassword {
		return
	}
	if f.reason != string(servicenow.KindAuthenticationFailed) {
		return // a timeout or an outage says nothing about the password
	}
	st.PasswordRejections++
	if passwordStopped(s) {
		st.NextRefreshTime = nil
		f.message = bound(fmt.Sprintf("snowauth stopped sending the password after %d rejections in a row, so that ServiceNow "+
			"does not lock the account out: fix the password in the credentials Secret (or request a refresh to try once more). %s",
			st.PasswordRejections, f.message), maxConditionMessage)
	}
}
