package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at link time:
//
//	go build -ldflags "-X github.com/snowauth/snowauth/internal/version.version=1.2.3"
var version string

// Info identifies a build.
type Info struct {
	Version, Revision, GoVersion string
}

// Get returns this binary's Info.
func Get() Info {
	info := Info{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return withDefault(info)
	}
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		// `go install ...@v0.2.0` records the tag; releases say 0.2.0.
		info.Version = strings.TrimPrefix(bi.Main.Version, "v")
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && info.Revision != "unknown" {
		info.Revision += "-dirty"
	}
	return withDefault(info)
}

func withDefault(i Info) Info {
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}
