package controllers

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
)

func TestKeptTokens(t *testing.T) {
	tok := func(expiry time.Time) keptToken {
		return keptToken{credentialsVersion: "7", generation: 2, accessToken: "kept", obtained: t0, expiry: expiry}
	}
	t.Run("gives back a token obtained from the same credentials and spec", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		k.put("uid-a", tok(t0.Add(time.Hour)), t0)
		got, ok := k.get("uid-a", "7", 2, t0.Add(time.Minute))
		g.Expect(ok).To(BeTrue())
		g.Expect(got.accessToken).To(Equal("kept"))
		g.Expect(k.has("uid-a", t0)).To(BeTrue())
	})
	t.Run("drops a token once the credentials or the spec changed", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		k.put("uid-a", tok(t0.Add(time.Hour)), t0)
		_, ok := k.get("uid-a", "8", 2, t0)
		g.Expect(ok).To(BeFalse())
		g.Expect(k.has("uid-a", t0)).To(BeFalse(), "dropped, not only skipped")
		k.put("uid-a", tok(t0.Add(time.Hour)), t0)
		_, ok = k.get("uid-a", "7", 3, t0)
		g.Expect(ok).To(BeFalse())
	})
	t.Run("never gives back an expired token", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		k.put("uid-a", tok(t0.Add(time.Minute)), t0)
		g.Expect(k.has("uid-a", t0.Add(time.Minute))).To(BeFalse())
		_, ok := k.get("uid-a", "7", 2, t0.Add(time.Minute))
		g.Expect(ok).To(BeFalse())
	})
	t.Run("is not confused by a connection created again under the same name", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		k.put("uid-a", tok(t0.Add(time.Hour)), t0)
		_, ok := k.get("uid-b", "7", 2, t0)
		g.Expect(ok).To(BeFalse())
	})
	t.Run("forgets expired tokens of connections nobody asks about", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		k.put("deleted", tok(t0.Add(time.Minute)), t0)
		k.put("uid-a", tok(t0.Add(time.Hour)), t0.Add(2*time.Minute))
		g.Expect(k.m).To(HaveLen(1))
		g.Expect(k.m).To(HaveKey(types.UID("uid-a")))
	})
	t.Run("stays bounded, making room by dropping the token that expires first", func(t *testing.T) {
		g := NewWithT(t)
		var k keptTokens
		for i := range maxKeptTokens {
			k.put(types.UID(fmt.Sprint(i)), tok(t0.Add(time.Hour+time.Duration(i)*time.Second)), t0)
		}
		k.put("one-more", tok(t0.Add(2*time.Hour)), t0)
		g.Expect(k.m).To(HaveLen(maxKeptTokens))
		g.Expect(k.m).NotTo(HaveKey(types.UID("0")))
		g.Expect(k.m).To(HaveKey(types.UID("one-more")))
	})
}
