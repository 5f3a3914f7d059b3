package plugin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/snowauth/snowauth/internal/plugin"
	"github.com/snowauth/snowauth/internal/testenv"
)

// TestTheDocsShowEveryCommandAndFlagAsTheHelpPrintsThem keeps
// docs/kubectl-plugin.md in step with the code: each command's usage line
// and flags, the flags every command takes and the exit codes, verbatim as
// --help prints them.
func TestTheDocsShowEveryCommandAndFlagAsTheHelpPrintsThem(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "kubectl-plugin.md"))
	g.Expect(err).NotTo(HaveOccurred())
	doc := string(raw)
	root := plugin.NewCommand(plugin.Options{IOStreams: genericiooptions.NewTestIOStreamsDiscard()})
	trim := func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) }

	_, exitCodes, found := strings.Cut(root.Long, "Exit codes:")
	g.Expect(found).To(BeTrue(), "the root command's help lists the exit codes")
	g.Expect(doc).To(ContainSubstring("Exit codes:" + exitCodes))
	documented := 0
	for _, cmd := range root.Commands() {
		if cmd.Name() == "help" {
			continue
		}
		documented++
		cmd.InitDefaultHelpFlag() // as cobra does before it prints help
		g.Expect(doc).To(ContainSubstring("## `kubectl servicenow "+cmd.Name()+"`"), cmd.Name())
		g.Expect(doc).To(ContainSubstring("Usage:\n  "+cmd.UseLine()+"\n\nFlags:\n"+trim(cmd.LocalFlags().FlagUsages())+"\n```"), cmd.Name())
		g.Expect(doc).To(ContainSubstring("Global Flags:\n"+trim(cmd.InheritedFlags().FlagUsages())+"\n```"), cmd.Name())
	}
	g.Expect(documented).To(Equal(8), "status, list, refresh, revoke, authorize, jwt-certificate, version, completion")
}
