// Package version says which build of snowauth is running: the version
// (set at link time by the Makefile, else the module's version, else
// "dev"), the VCS revision Go stamped into the binary, and the Go version.
// The manager exports it as snowauth_build_info. It knows nothing else.
package version
