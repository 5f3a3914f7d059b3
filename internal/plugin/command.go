package plugin

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// scheme knows the only types the plugin reads: connections and
// events.k8s.io/v1 Events. Secrets are deliberately absent.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(snowv1.AddToScheme(scheme))
	utilruntime.Must(eventsv1.AddToScheme(scheme))
}

// Options is what the commands take from the process around them.
type Options struct {
	// IOStreams receive the commands' output (Out) and errors (ErrOut).
	genericiooptions.IOStreams
	// Now is the clock behind relative times and the refresh request's
	// value; nil means time.Now. Tests fix it so output is exact.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// NewCommand returns `kubectl servicenow` with its subcommands and the
// standard kubectl connection flags (-n, --context, --kubeconfig, ...).
// Each call has its own flags, so tests can run several invocations.
func NewCommand(o Options) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true).WithWarningPrinter(o.IOStreams)
	root := &cobra.Command{
		Use:   "kubectl-servicenow",
		Short: "Inspect and refresh snowauth's ServiceNowConnections",
		Long: "Inspect and refresh snowauth's ServiceNowConnections: how each access token is doing, " +
			"why a refresh fails, and an immediate refresh on request. Uses your kubeconfig and RBAC; " +
			"never reads or prints a token.",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl servicenow"},
		// A failed refresh or a missing connection is not a usage mistake:
		// print the error alone.
		SilenceUsage: true,
		// cobra's completion scripts would complete a program named
		// kubectl-servicenow, not `kubectl servicenow`; kubectl completes
		// plugins through a kubectl_complete-servicenow helper instead.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	flags.AddFlags(root.PersistentFlags())
	s := &session{Options: o, flags: flags}
	root.AddCommand(newStatusCommand(s), newListCommand(s), newRefreshCommand(s), newAuthorizeCommand(s))
	return root
}

// session is one invocation: the options and the parsed connection flags.
type session struct {
	Options
	flags *genericclioptions.ConfigFlags
}

// client builds an API client from the kubeconfig and flags, and returns
// the namespace to work in: -n, or the kubeconfig context's namespace.
func (s *session) client() (client.WithWatch, string, error) {
	ns, _, err := s.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	cfg, err := s.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// explain turns the API errors a user most often meets into what to do.
func explain(err error, namespace, name string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err) && name != "":
		return fmt.Errorf("ServiceNowConnection %q not found in namespace %q", name, namespace)
	case meta.IsNoMatchError(err):
		return fmt.Errorf("this cluster does not serve ServiceNowConnections (%s): is snowauth's CRD installed? %w",
			snowv1.GroupVersion, err)
	}
	return err
}
