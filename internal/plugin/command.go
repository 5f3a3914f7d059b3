package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
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
	utilruntime.Must(corev1.AddToScheme(scheme))
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
//
// Its errors carry their exit code (ExitCode). Everything written to
// ErrOut, and the human output on Out, goes through Printable; -o json
// and yaml are written as the encoders made them.
func NewCommand(o Options) *cobra.Command {
	raw := o.Out
	o.ErrOut = printableWriter{o.ErrOut}
	o.Out = printableWriter{o.Out}
	flags := genericclioptions.NewConfigFlags(true).WithWarningPrinter(o.IOStreams)
	// Only cli-runtime's discovery client caches, and the plugin does not
	// use it: --cache-dir would do nothing.
	flags.CacheDir = nil
	root := &cobra.Command{
		Use:   "kubectl-servicenow",
		Short: "Inspect and refresh snowauth's ServiceNowConnections",
		Long: "Inspect and refresh snowauth's ServiceNowConnections: how each access token is doing, " +
			"why a refresh fails, an immediate refresh on request, and a leaked token revoked and replaced. Uses your kubeconfig and RBAC, " +
			"and the kubectl flags below; never reads or prints a token.\n\n" + exitCodesHelp,
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl servicenow"},
		// Runnable, so that an unknown command is refused by Args, as a
		// usage error, rather than by cobra, without an exit code.
		Args: unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		// A failed refresh or a missing connection is not a usage mistake:
		// print the error alone. Usage errors say where the usage is.
		SilenceUsage: true,
		// The completion command is the plugin's own: cobra's would not
		// refuse an unknown shell.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	root.SetFlagErrorFunc(flagError)
	flags.AddFlags(root.PersistentFlags())
	s := &session{Options: o, raw: raw, flags: flags}
	s.registerFlagCompletions(root)
	root.AddCommand(newStatusCommand(s), newListCommand(s), newRefreshCommand(s), newRevokeCommand(s), newAuthorizeCommand(s),
		newJWTCertificateCommand(s), newVersionCommand(s), newCompletionCommand(s))
	return root
}

// session is one invocation: the options and the parsed connection flags.
type session struct {
	// Options' Out and ErrOut print only printable text.
	Options
	// raw is the Out given, for -o json and yaml.
	raw   io.Writer
	flags *genericclioptions.ConfigFlags
}

// out is where a command prints: Out for people, the raw stream for a
// printer's encoding.
func (s *session) out(o *outputFlags) io.Writer {
	if o.human() {
		return s.Out
	}
	return s.raw
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

// selection is which connections a command that lists acts on:
// -l/--selector and -A/--all-namespaces.
type selection struct {
	selector      string
	allNamespaces bool
}

func (sel *selection) addFlags(cmd *cobra.Command, what string) {
	cmd.Flags().StringVarP(&sel.selector, "selector", "l", "",
		"Selector (label query) to filter on, supports '=', '==', '!=', 'in', 'notin' and 'exists' (e.g. -l key1=value1,key2=value2).")
	cmd.Flags().BoolVarP(&sel.allNamespaces, "all-namespaces", "A", false,
		what+" in all namespaces; the namespace of -n or of the kubeconfig context is ignored.")
}

// labels parses the selector; a malformed one is a usage error.
func (sel *selection) labels(cmd *cobra.Command) (labels.Selector, error) {
	l, err := labels.Parse(sel.selector)
	if err != nil {
		return nil, usageError(cmd, "invalid --selector %q: %v", sel.selector, err)
	}
	return l, nil
}

// where says where the selection looked, for "No ServiceNowConnections
// found in ...".
func (sel *selection) where(ns string) string {
	if sel.allNamespaces {
		return "any namespace"
	}
	return fmt.Sprintf("namespace %q", ns)
}

// list lists the selected connections in ns (or all namespaces), sorted
// by namespace and name.
func (sel *selection) list(ctx context.Context, c client.Client, ns string, l labels.Selector) ([]snowv1.ServiceNowConnection, error) {
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: l}}
	if !sel.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	var list snowv1.ServiceNowConnectionList
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, explain(err, ns, "")
	}
	sortConnections(list.Items)
	return list.Items, nil
}

// resolve reads the connections a command was given: the ones named names
// (with the error of each it could not read) or, without names, the ones
// sel and l select (err is then the List's).
func (sel *selection) resolve(ctx context.Context, c client.Client, ns string, names []string, l labels.Selector) (
	conns []snowv1.ServiceNowConnection, errs []error, err error) {
	if len(names) > 0 {
		conns, errs = get(ctx, c, ns, names)
		return conns, errs, nil
	}
	conns, err = sel.list(ctx, c, ns, l)
	return conns, nil, err
}

// get reads the connections named names in ns, in that order, and the
// error of each name it could not read.
func get(ctx context.Context, c client.Client, ns string, names []string) ([]snowv1.ServiceNowConnection, []error) {
	var (
		conns []snowv1.ServiceNowConnection
		errs  []error
	)
	for _, name := range names {
		var conn snowv1.ServiceNowConnection
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &conn); err != nil {
			errs = append(errs, explain(err, ns, name))
			continue
		}
		conns = append(conns, conn)
	}
	return conns, errs
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

// connection reads the connection named name in the session's namespace,
// with the client it used: the first step of the commands that act on one.
func (s *session) connection(ctx context.Context, name string) (client.WithWatch, *snowv1.ServiceNowConnection, error) {
	c, ns, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	conn := &snowv1.ServiceNowConnection{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
		return nil, nil, explain(err, ns, name)
	}
	return c, conn, nil
}
