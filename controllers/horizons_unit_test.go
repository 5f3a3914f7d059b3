package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func TestTheNearestHorizonWithinItsWarningIsReportedAndTheNextOneWakes(t *testing.T) {
	g := NewWithT(t)
	day := 24 * time.Hour
	hs := []snowv1.Horizon{
		{Kind: snowv1.HorizonClientSecret, At: metav1.Time{Time: t0.Add(40 * day)}},
		{Kind: snowv1.HorizonRefreshToken, At: metav1.Time{Time: t0.Add(10 * day)}},
		{Kind: snowv1.HorizonCertificate, At: metav1.Time{Time: t0.Add(5 * day)}},
	}
	near, next := nearestHorizon(hs, t0, 21*day)
	g.Expect(near.Kind).To(Equal(snowv1.HorizonCertificate), "the earliest of those within the warning")
	g.Expect(next).To(Equal(t0.Add(19*day)), "the client secret enters its warning 21 days before its end")

	near, next = nearestHorizon(hs[:1], t0, 21*day)
	g.Expect(near).To(BeNil())
	g.Expect(next).To(Equal(t0.Add(19 * day)))

	near, _ = nearestHorizon([]snowv1.Horizon{{Kind: snowv1.HorizonRefreshToken, At: metav1.Time{Time: t0.Add(-day)}}}, t0, day)
	g.Expect(near).NotTo(BeNil(), "a horizon passed is still reported")
}

func TestAValuesFirstUseIsKeptUntilTheValueChanges(t *testing.T) {
	g := NewWithT(t)
	since, note := firstUsed(nil, annotationClientSecretFirstUsed, "secret-1", t0)
	g.Expect(since).To(Equal(t0))
	g.Expect(note).NotTo(ContainSubstring("secret-1"), "only a digest is kept")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationClientSecretFirstUsed: note}}}

	later, again := firstUsed(secret, annotationClientSecretFirstUsed, "secret-1", t0.Add(time.Hour))
	g.Expect(later).To(Equal(t0), "the same value: its first use stands")
	g.Expect(again).To(Equal(note))

	rotated, _ := firstUsed(secret, annotationClientSecretFirstUsed, "secret-2", t0.Add(time.Hour))
	g.Expect(rotated).To(Equal(t0.Add(time.Hour)), "a new value starts afresh")
}
