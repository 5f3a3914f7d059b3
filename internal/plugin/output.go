package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// wide is the -o value for the human output with more columns.
const wide = "wide"

// outputFlags are -o and --show-managed-fields of a command that prints
// connections: the human output by default or with -o wide, else the
// objects themselves through cli-runtime's printers, as kubectl get -o
// json|yaml prints them.
type outputFlags struct {
	format   string
	jsonYaml *genericclioptions.JSONYamlPrintFlags
}

func newOutputFlags(cmd *cobra.Command) *outputFlags {
	o := &outputFlags{jsonYaml: genericclioptions.NewJSONYamlPrintFlags()}
	cmd.Flags().StringVarP(&o.format, "output", "o", "", fmt.Sprintf(
		"Output format. One of: (%s). The default is text for people; json, yaml and kyaml print the objects as kubectl get -o does.",
		strings.Join(o.allowed(), ", ")))
	o.jsonYaml.AddFlags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(o.allowed(), cobra.ShellCompDirectiveNoFileComp))
	return o
}

func (o *outputFlags) allowed() []string {
	return append(o.jsonYaml.AllowedFormats(), wide)
}

func (o *outputFlags) human() bool { return o.format == "" || o.format == wide }

func (o *outputFlags) wide() bool { return o.format == wide }

// printer is the printer for -o, nil for the human output. An unknown
// format is a usage error.
func (o *outputFlags) printer(cmd *cobra.Command) (printers.ResourcePrinter, error) {
	if o.human() {
		return nil, nil
	}
	p, err := o.jsonYaml.ToPrinter(o.format)
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		return nil, usageError(cmd, "unknown output format %q: use one of %s", o.format, strings.Join(o.allowed(), ", "))
	}
	if err != nil {
		return nil, err
	}
	if o.format != "json" {
		// Innermost, after managedFields are omitted.
		if omit, ok := p.(*printers.OmitManagedFieldsPrinter); ok {
			omit.Delegate = yamlSafe{omit.Delegate}
		} else {
			p = yamlSafe{p}
		}
	}
	return printers.NewTypeSetter(scheme).ToPrinter(p), nil
}

// yamlSafe hands its YAML printer the object as JSON in which DEL, the C1
// controls and U+FFFE/U+FFFF are \u escapes. The YAML printers convert
// from JSON, whose encoder writes those characters as they are, and YAML
// refuses them: a condition message holding one would make -o yaml fail
// with "control characters are not allowed". Escaped, they decode to the
// same string and the YAML encoder writes them escaped in turn.
type yamlSafe struct{ delegate printers.ResourcePrinter }

func (p yamlSafe) PrintObj(obj runtime.Object, w io.Writer) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return p.delegate.PrintObj(&runtime.Unknown{Raw: escapeForYAML(data), ContentType: runtime.ContentTypeJSON}, w)
}

// escapeForYAML escapes what YAML cannot hold in JSON text from
// json.Marshal: valid UTF-8, with such characters only inside strings.
func escapeForYAML(data []byte) []byte {
	var out []byte
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff {
			if out == nil {
				out = append(make([]byte, 0, len(data)+16), data[:i]...)
			}
			out = fmt.Appendf(out, `\u%04x`, r)
		} else if out != nil {
			out = append(out, data[i:i+size]...)
		}
		i += size
	}
	if out == nil {
		return data
	}
	return out
}

// printConnections prints conns with p as kubectl get does: the object
// alone when one was asked for by name (single), else a List of them.
func printConnections(p printers.ResourcePrinter, w io.Writer, conns []snowv1.ServiceNowConnection, single bool) error {
	if single && len(conns) == 1 {
		return p.PrintObj(&conns[0], w)
	}
	list := &metav1.List{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"},
		Items:    make([]runtime.RawExtension, 0, len(conns)),
	}
	for i := range conns {
		// The typed client leaves apiVersion and kind empty; a List's
		// items carry theirs.
		c := &conns[i]
		gvk, err := apiutil.GVKForObject(c, scheme)
		if err != nil {
			return err
		}
		c.SetGroupVersionKind(gvk)
		list.Items = append(list.Items, runtime.RawExtension{Object: c})
	}
	return p.PrintObj(list, w)
}

// sortConnections orders conns by namespace and name, as kubectl lists.
func sortConnections(conns []snowv1.ServiceNowConnection) {
	slices.SortFunc(conns, func(a, b snowv1.ServiceNowConnection) int {
		if n := strings.Compare(a.Namespace, b.Namespace); n != 0 {
			return n
		}
		return strings.Compare(a.Name, b.Name)
	})
}
