package plugin

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// shells are the shells `completion` writes a script for.
var shells = []string{"bash", "zsh", "fish", "powershell"}

func newCompletionCommand(s *session) *cobra.Command {
	var noDescriptions bool
	cmd := &cobra.Command{
		Use:   "completion (bash | zsh | fish | powershell)",
		Short: "Print a shell completion script",
		Long: "Print the script that completes kubectl-servicenow's commands, flags and connection names in the " +
			"given shell (cobra's generators). The script completes the command kubectl-servicenow; kubectl " +
			"completes `kubectl servicenow` by running an executable named kubectl_complete-servicenow on your PATH " +
			"that runs `kubectl servicenow __complete \"$@\"`.",
		Example: `  source <(kubectl-servicenow completion bash)
  kubectl-servicenow completion zsh > "${fpath[1]}/_kubectl-servicenow"
  kubectl-servicenow completion fish > ~/.config/fish/completions/kubectl-servicenow.fish

  # kubectl servicenow <TAB>, with kubectl's own completion loaded:
  printf '#!/bin/sh\nkubectl servicenow __complete "$@"\n' > ~/bin/kubectl_complete-servicenow
  chmod +x ~/bin/kubectl_complete-servicenow`,
		ValidArgs: shells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(shells, args[0]) {
				return usageError(cmd, "give one shell of: %s; got %q", strings.Join(shells, ", "), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), s.raw
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, !noDescriptions)
			case "zsh":
				if noDescriptions {
					return root.GenZshCompletionNoDesc(out)
				}
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, !noDescriptions)
			default: // powershell, as Args checked
				if noDescriptions {
					return root.GenPowerShellCompletion(out)
				}
				return root.GenPowerShellCompletionWithDesc(out)
			}
		},
	}
	cmd.Flags().BoolVar(&noDescriptions, "no-descriptions", false, "Complete without a description of each choice.")
	return cmd
}

// completionTimeout bounds the API requests of a completion: a Tab key
// should not hang on an unreachable cluster.
const completionTimeout = 5 * time.Second

// completeNames completes connection names in the namespace of the
// flags; many says whether the command takes more than one.
func (s *session) completeNames(many bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 && !many {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, ns, err := s.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		var list snowv1.ServiceNowConnectionList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, conn := range list.Items {
			if strings.HasPrefix(conn.Name, toComplete) && !slices.Contains(args, conn.Name) {
				names = append(names, conn.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// registerFlagCompletions completes -n with the cluster's namespaces and
// --context, --cluster and --user from the kubeconfig, as kubectl does.
func (s *session) registerFlagCompletions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, _, err := s.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		// Metadata only: the plugin's scheme has no core types.
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NamespaceList"})
		if err := c.List(ctx, list); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, toComplete) {
				names = append(names, ns.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	fromKubeconfig := func(names func(cfg kubeconfigNames) []string) cobra.CompletionFunc {
		return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cfg, err := s.flags.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			n := kubeconfigNames{}
			for name := range cfg.Contexts {
				n.contexts = append(n.contexts, name)
			}
			for name := range cfg.Clusters {
				n.clusters = append(n.clusters, name)
			}
			for name := range cfg.AuthInfos {
				n.users = append(n.users, name)
			}
			out := names(n)
			slices.Sort(out)
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("context", fromKubeconfig(func(n kubeconfigNames) []string { return n.contexts }))
	_ = root.RegisterFlagCompletionFunc("cluster", fromKubeconfig(func(n kubeconfigNames) []string { return n.clusters }))
	_ = root.RegisterFlagCompletionFunc("user", fromKubeconfig(func(n kubeconfigNames) []string { return n.users }))
}

// kubeconfigNames are the names a kubeconfig defines.
type kubeconfigNames struct{ contexts, clusters, users []string }

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}
