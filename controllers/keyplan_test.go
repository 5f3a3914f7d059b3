package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// testKeyTimes rotate every 30 days, publish a day ahead and retire an old
// key 8 minutes after it last signed.
var testKeyTimes = keyTimes{every: 30 * 24 * time.Hour, publishAhead: 24 * time.Hour, retireAfter: 8 * time.Minute}

func testKey(t *testing.T, created time.Time) managedKey {
	t.Helper()
	k, err := newManagedKey("RS256", created)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// step applies a plan as signingKeys does: a new key is added and planned
// again, and what the plan publishes is "written" to status.
func step(t *testing.T, keys []managedKey, published []snowv1.PublishedKey, now time.Time) ([]managedKey, []snowv1.PublishedKey, keyPlan) {
	t.Helper()
	p := planKeys(keys, published, "RS256", now, testKeyTimes)
	if p.create {
		p = planKeys(append(p.keep, testKey(t, now)), published, "RS256", now, testKeyTimes)
	}
	return p.keep, p.published, p
}

func activeID(p keyPlan) string {
	if p.active < 0 {
		return ""
	}
	return p.keep[p.active].ID
}

func TestAFirstKeySignsOnlyOncePublished(t *testing.T) {
	g := NewWithT(t)
	keys, published, p := step(t, nil, nil, t0)
	g.Expect(keys).To(HaveLen(1), "a key is made")
	g.Expect(published).To(HaveLen(1), "and published")
	g.Expect(p.active).To(Equal(-1), "but it signs nothing before status lists it")

	_, _, p = step(t, keys, published, t0.Add(time.Second))
	g.Expect(activeID(p)).To(Equal(keys[0].ID), "a first key signs as soon as it is published: no instance can hold a document without it")
}

func TestARotatedKeyIsPublishedADayBeforeItSignsAndTheOldOneStaysUntilItsAssertionsExpire(t *testing.T) {
	g := NewWithT(t)
	keys, published, _ := step(t, nil, nil, t0)
	keys, published, _ = step(t, keys, published, t0.Add(time.Second))
	first := keys[0].ID

	rotation := t0.Add(testKeyTimes.every)
	keys, published, p := step(t, keys, published, rotation.Add(-time.Minute))
	g.Expect(keys).To(HaveLen(1), "no new key before its time")
	g.Expect(p.nextRotation).To(Equal(rotation))

	keys, published, p = step(t, keys, published, rotation)
	g.Expect(keys).To(HaveLen(2), "a new key at the rotation time")
	second := keys[1].ID
	g.Expect(activeID(p)).To(Equal(first), "the new key is only published")
	g.Expect(published[1].SignsFrom.Time).To(Equal(rotation.Add(testKeyTimes.publishAhead)), "status says when it signs")

	for _, at := range []time.Duration{time.Hour, 23*time.Hour + 59*time.Minute} {
		keys, published, p = step(t, keys, published, rotation.Add(at))
		g.Expect(activeID(p)).To(Equal(first), "still the old key %v after the new one was published", at)
		g.Expect(keys).To(HaveLen(2), "and no third key")
	}

	switched := rotation.Add(testKeyTimes.publishAhead)
	keys, published, p = step(t, keys, published, switched)
	g.Expect(activeID(p)).To(Equal(second), "the new key signs once it has been published a day")
	g.Expect(published).To(HaveLen(2), "the old key is still published")
	g.Expect(published[0].RetiresAt.Time).To(Equal(switched.Add(testKeyTimes.retireAfter)))

	keys, published, _ = step(t, keys, published, switched.Add(testKeyTimes.retireAfter-time.Second))
	g.Expect(published).To(HaveLen(2), "not before its assertions have expired")
	keys, published, p = step(t, keys, published, switched.Add(testKeyTimes.retireAfter))
	g.Expect(published).To(HaveLen(1), "then it leaves the document")
	g.Expect(keys).To(HaveLen(1), "and the Secret")
	g.Expect(activeID(p)).To(Equal(second))
}

func TestAKeyMissingFromStatusIsPublishedAgainBeforeItSigns(t *testing.T) {
	g := NewWithT(t)
	keys, published, _ := step(t, nil, nil, t0)
	keys, published, _ = step(t, keys, published, t0.Add(time.Second))
	rotation := t0.Add(testKeyTimes.every)
	keys, _, _ = step(t, keys, published, rotation)

	// The status write that published the new key was refused: status
	// still lists the old key alone.
	keys, published, p := step(t, keys, published, rotation.Add(testKeyTimes.publishAhead))
	g.Expect(activeID(p)).To(Equal(keys[0].ID), "a key status never listed does not sign")
	g.Expect(published[1].PublishedAt.Time).To(Equal(rotation.Add(testKeyTimes.publishAhead)), "it is published from now")
	_, _, p = step(t, keys, published, rotation.Add(2*testKeyTimes.publishAhead))
	g.Expect(activeID(p)).To(Equal(keys[1].ID), "and signs a publishAhead later")
}

func TestAnotherAlgorithmIsARotation(t *testing.T) {
	g := NewWithT(t)
	keys, published, _ := step(t, nil, nil, t0)
	keys, published, _ = step(t, keys, published, t0.Add(time.Second))
	p := planKeys(keys, published, "ES256", t0.Add(time.Hour), testKeyTimes)
	g.Expect(p.create).To(BeTrue(), "a key of the new algorithm is made at once")
	g.Expect(activeID(p)).To(Equal(keys[0].ID), "and the old one signs until the new one is published a day")
}

func TestTheDocumentNeverHoldsMoreThanItsLimit(t *testing.T) {
	g := NewWithT(t)
	var keys []managedKey
	var published []snowv1.PublishedKey
	for i := range 6 {
		k := testKey(t, t0.Add(time.Duration(i)*time.Minute))
		keys = append(keys, k)
		published = append(published, snowv1.PublishedKey{KeyID: k.ID, Algorithm: "RS256", PublishedAt: metav1.Time{Time: t0.Add(-48 * time.Hour)}})
	}
	p := planKeys(keys, published, "RS256", t0.Add(time.Hour), testKeyTimes)
	g.Expect(len(p.published)).To(BeNumerically("<", maxPublishedKeys), "room for one more key")
	g.Expect(activeID(p)).To(Equal(keys[5].ID), "the newest published key signs")
}
