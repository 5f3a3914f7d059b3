package controllers

import (
	"cmp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
)

// The manager's memory must not grow with what tenants write: anyone who
// may create Secrets or connections in a namespace could otherwise push it
// past its memory limit into an OOM loop for every namespace. The cache
// therefore holds:
//   - connections, with no labels and only a few short annotations under
//     snowauth's prefix (a client-side `kubectl apply` stores the whole
//     object again in an annotation; anything a tenant adds is cut);
//   - Secrets labelled as snowauth's, with their data only when a
//     connection controls them (token and refresh-token Secrets, whose size
//     snowauth decides). A look-alike, labelled by anyone, is cached with
//     its name and snowauth's labels only, marked annotationTrimmed;
//   - every Secret's identity (name, UID, version) in a separate metadata
//     cache (keepIdentityOnly).

// annotationTrimmed marks a cached Secret whose data, annotations and
// foreign labels the cache dropped. It exists only in the cache: it is never
// written, and a Secret read from the cache with it is read from the API
// server before snowauth uses its data.
const annotationTrimmed = "servicenow.snowauth.dev/cache-trimmed"

// CacheOptions returns the manager's cache options. namespaces restricts
// the cache (nil: all namespaces); handovers is the authorization server's
// namespace ("" when it is off), whose hand-over Secrets are watched too;
// connections, when not nil, is a shard's label selector: the manager sees,
// and so serves, only the connections it matches.
func CacheOptions(namespaces []string, handovers string, connections labels.Selector) cache.Options {
	secrets := cache.ByObject{
		Label:     labels.SelectorFromSet(labels.Set{snowv1.LabelManagedBy: snowv1.ManagedByValue}),
		Transform: trimSecret,
	}
	if len(namespaces) > 0 && handovers != "" && !slices.Contains(namespaces, handovers) {
		secrets.Namespaces = namespaceConfig(append(slices.Clone(namespaces), handovers))
	}
	return cache.Options{
		DefaultNamespaces: namespaceConfig(namespaces),
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:               secrets,
			&snowv1.ServiceNowConnection{}: {Transform: trimConnection, Label: connections},
		},
	}
}

func namespaceConfig(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		m[ns] = cache.Config{}
	}
	return m
}

// trimSecret keeps a Secret's data only when a connection controls it.
func trimSecret(in any) (any, error) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return in, nil
	}
	s.ManagedFields = nil
	if controlledByConnection(s) {
		return s, nil
	}
	s.Data, s.StringData = nil, nil
	s.Labels = ownLabels(s.Labels)
	s.Annotations = map[string]string{annotationTrimmed: "true"}
	return s, nil
}

// trimmed says whether the cache dropped this Secret's data.
func trimmed(s *corev1.Secret) bool { return s.Annotations[annotationTrimmed] != "" }

// controlledByConnection says whether a ServiceNowConnection is the
// Secret's controller. Any connection: which one is checked where it is
// used (metav1.IsControlledBy); the cache only bounds what it holds.
func controlledByConnection(s *corev1.Secret) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && ref.Kind == "ServiceNowConnection" &&
		strings.HasPrefix(ref.APIVersion, snowv1.GroupVersion.Group+"/")
}

// trimConnection keeps no labels and only snowauth's own annotations (the
// servicenow.snowauth.dev/ prefix), at most ownAnnotations of them of at
// most ownAnnotationSize bytes each: the refresh, authorization and revoke
// requests first, which is all snowauth reads. So a change to any other
// annotation or label does not wake the reconciler either. Status patches
// are merge patches of the difference, so what the cache drops is never
// written back.
func trimConnection(in any) (any, error) {
	c, ok := in.(*snowv1.ServiceNowConnection)
	if !ok {
		return in, nil
	}
	c.ManagedFields, c.Labels = nil, nil
	keys := make([]string, 0, len(c.Annotations))
	for k, v := range c.Annotations {
		if strings.HasPrefix(k, snowv1.GroupVersion.Group+"/") && len(v) <= ownAnnotationSize {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b)) })
	var kept map[string]string
	for _, k := range keys[:min(len(keys), ownAnnotations)] {
		if kept == nil {
			kept = map[string]string{}
		}
		kept[k] = c.Annotations[k]
	}
	c.Annotations = kept
	return c, nil
}

const (
	ownAnnotations    = 16
	ownAnnotationSize = 1024
)

// rank puts the annotations snowauth acts on first.
func rank(key string) int {
	switch key {
	case snowv1.AnnotationRefreshRequestedAt, snowv1.AnnotationAuthorizationRequestedAt, snowv1.AnnotationRevokeRequestedAt:
		return 0
	}
	return 1
}

// ownLabels keeps the labels snowauth puts on its Secrets.
func ownLabels(m map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range []string{snowv1.LabelManagedBy, snowv1.LabelConnection, authserver.LabelHandover} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// keepIdentityOnly trims a Secret's metadata to what the watch needs. Labels
// and annotations go too: kubectl's last-applied-configuration annotation
// holds a client-side-applied Secret's data in clear.
func keepIdentityOnly(in any) (any, error) {
	if m, ok := in.(*metav1.PartialObjectMetadata); ok {
		m.ObjectMeta = metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		}
	}
	return in, nil
}
