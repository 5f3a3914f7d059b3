// Package v1alpha1 defines ServiceNowConnection, the custom resource through which
// a user asks snowauth to keep a ServiceNow OAuth access token fresh in a Secret.
//
// The types carry their admission rules as kubebuilder markers (OpenAPI schema
// and CEL), so the API server rejects bad input with a readable message before
// the operator ever sees it. What cannot be checked at admission (a Secret that
// does not exist, credentials ServiceNow rejects) is reported through
// status.conditions, whose types and reasons are the constants in
// condition_types.go.
//
// This package holds no behaviour: the reconciler lives in
// github.com/snowauth/snowauth/controllers.
package v1alpha1
