package version

import (
	"runtime"
	"testing"
)

func TestGetNamesTheGoVersionAndAVersionEvenInATestBinary(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Version == "" || i.Revision == "" {
		t.Errorf("Get() = %+v: a field is empty", i)
	}
}

func TestGetPrefersTheVersionSetAtLinkTime(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "1.2.3"
	if got := Get().Version; got != "1.2.3" {
		t.Errorf("Version = %q, want the link-time 1.2.3", got)
	}
}
