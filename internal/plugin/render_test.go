package plugin_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/plugin"
)

func TestRelativeTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"says now for the current second", 400 * time.Millisecond, "now"},
		{"puts future times after in", 24 * time.Minute, "in 24m"},
		{"puts past times before ago", -3 * time.Minute, "3m ago"},
		{"rounds away the sub-second part of a status time", 24*time.Minute - 300*time.Millisecond, "in 24m"},
		{"shows seconds below two minutes, as kubectl's AGE does", -90 * time.Second, "90s ago"},
		{"keeps minutes and seconds below ten minutes", 5*time.Minute + 30*time.Second, "in 5m30s"},
		{"shows hours and minutes for a long refreshBefore", 4*time.Hour + 20*time.Minute, "in 4h20m"},
		{"shows days for a refresh token's lifespan", 100 * 24 * time.Hour, "in 100d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(plugin.RelativeTime(t0.Add(tc.d), t0)).To(Equal(tc.want))
		})
	}
}
