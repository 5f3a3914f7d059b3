package plugin

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/snowauth/snowauth/internal/version"
)

// VersionInfo is what `version -o json|yaml` prints, shaped like kubectl
// version's output.
type VersionInfo struct {
	// ClientVersion is the plugin's build.
	ClientVersion ClientVersion `json:"clientVersion"`
}

// ClientVersion identifies the plugin's build.
type ClientVersion struct {
	// Version is the release (vX.Y.Z), set at link time or from the module
	// version `go install ...@vX.Y.Z` records; "dev" otherwise.
	Version string `json:"version"`
	// Revision is the VCS revision the binary was built from, "-dirty" if
	// the tree had changes, or "unknown".
	Revision string `json:"revision"`
	// GoVersion is the Go release that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is the binary's GOOS/GOARCH.
	Platform string `json:"platform"`
}

func newVersionCommand(s *session) *cobra.Command {
	var (
		output     string
		clientOnly bool
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version, revision and Go version",
		Long: "Print the plugin's version, the VCS revision it was built from and the Go version that built it. " +
			"The plugin does not ask the cluster, so --client is implied; snowauth's manager reports its own " +
			"version as the snowauth_build_info metric.",
		Example: `  kubectl servicenow version
  kubectl servicenow version -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !clientOnly {
				return usageError(cmd, "--client=false: the plugin does not ask the cluster for versions; use kubectl version")
			}
			i := version.Get()
			v := VersionInfo{ClientVersion: ClientVersion{
				Version: i.Version, Revision: i.Revision, GoVersion: i.GoVersion,
				Platform: runtime.GOOS + "/" + runtime.GOARCH,
			}}
			switch output {
			case "":
				c := v.ClientVersion
				_, err := fmt.Fprintf(s.Out, "Client Version: %s\nRevision: %s\nGo Version: %s\nPlatform: %s\n",
					c.Version, c.Revision, c.GoVersion, c.Platform)
				return err
			case "json":
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(s.raw, "%s\n", b)
				return err
			case "yaml":
				b, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = s.raw.Write(b)
				return err
			}
			return usageError(cmd, "unknown output format %q: use json or yaml", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format. One of: (json, yaml). The default is text for people.")
	cmd.Flags().BoolVar(&clientOnly, "client", true, "Print only the plugin's version: always true, the plugin does not ask the cluster.")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
