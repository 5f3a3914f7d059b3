package install_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/snowauth/snowauth/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// Each manager logs into its test's buffer; this only quiets the
	// process-wide logger that client-go's reflectors fall back to.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.Run(m, &env)
}

// repo is the repository's top folder.
var repo = testenv.RepoRoot()

// chartDir is the Helm chart.
var chartDir = filepath.Join(repo, "dist", "chart")

// allOptionsValues sets every value of the chart.
var allOptionsValues = filepath.Join(chartDir, "ci", "all-options-values.yaml")

// tool finds a tool that make builds into bin/: the path in environment
// variable envVar (the Makefile exports it), else bin/<name>-<version> with
// the version pinned in the Makefile. A missing tool fails the test: a green
// run must mean the install paths were checked.
func tool(t testing.TB, envVar, name, versionVar string) string {
	t.Helper()
	path := os.Getenv(envVar)
	if path == "" {
		makefile, err := os.ReadFile(filepath.Join(repo, "Makefile"))
		if err != nil {
			t.Fatalf("reading the Makefile for %s: %v", versionVar, err)
		}
		m := regexp.MustCompile(`(?m)^` + versionVar + `\s*\?=\s*(\S+)`).FindSubmatch(makefile)
		if m == nil {
			t.Fatalf("the Makefile pins no %s", versionVar)
		}
		path = filepath.Join(repo, "bin", name+"-"+string(m[1]))
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): run `make %s`, or `make test`, which builds it", path, err, name)
	}
	return path
}

// helmTemplate renders the chart as release in namespace, with extra helm
// arguments (--set, --values), and fails the test if helm does.
func helmTemplate(t testing.TB, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helmTemplateOutput(t, release, namespace, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	return decodeManifests(t, out)
}

// helmTemplateOutput runs helm template and returns what it printed
// (stdout, then stderr) and its error.
func helmTemplateOutput(t testing.TB, release, namespace string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "HELM", "helm", "HELM_VERSION"),
		append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// kustomizeBuild builds a kustomization under config/.
func kustomizeBuild(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(tool(t, "KUSTOMIZE", "kustomize", "KUSTOMIZE_VERSION"), "build", filepath.Join(repo, dir))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	return decodeManifests(t, out)
}

// readManifests reads a file of YAML documents from the repository.
func readManifests(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifests(t, data)
}

// decodeManifests splits YAML documents into objects, dropping empty ones.
func decodeManifests(t testing.TB, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding manifests: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// ofKind returns the objects of a kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the one object of a kind, failing unless there is exactly one.
func only(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := ofKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want one %s, found %d", kind, len(found))
	}
	return found[0]
}

// kinds lists the kinds of objs, sorted and without repeats.
func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// field reads a nested field of an object.
func field(o *unstructured.Unstructured, path ...string) any {
	v, _, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
	return v
}

// applyOrder puts what other objects need first: CRDs before their objects,
// namespaces before what lives in them, ServiceAccounts before the Pods that
// run as them.
var applyOrder = map[string]int{
	"CustomResourceDefinition": 0, "Namespace": 1, "PriorityClass": 1, "ServiceAccount": 2, "ConfigMap": 2, "Secret": 2,
}

// apply server-side applies objs as snowauth's installer would. CRDs are
// applied with a dry run: the API server validates them in full, but the
// ServiceNowConnection CRD that the other tests of this process use stays
// as testenv installed it.
func apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) error {
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int {
		return orderOf(a.GetKind()) - orderOf(b.GetKind())
	})
	for _, o := range sorted {
		opts := []client.ApplyOption{client.FieldOwner("snowauth-install-test"), client.ForceOwnership}
		if o.GetKind() == "CustomResourceDefinition" {
			opts = append(opts, client.DryRunAll)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

func orderOf(kind string) int {
	if o, ok := applyOrder[kind]; ok {
		return o
	}
	return 3
}

// deleteAfterTest deletes cluster-scoped objects when the test ends; the
// namespaced ones go with their test namespace. Namespaces stay: envtest
// runs no namespace controller, so a deleted one would stay Terminating and
// refuse the next run's objects.
func deleteAfterTest(t testing.TB, objs []*unstructured.Unstructured) {
	t.Cleanup(func() {
		for _, o := range objs {
			if o.GetNamespace() == "" && o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "Namespace" {
				if err := env.Client.Delete(context.Background(), o.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		}
	})
}

// installMonitoringCRDs installs the minimal ServiceMonitor and
// PrometheusRule CRDs from testdata/crds (see the package doc).
func installMonitoringCRDs(t testing.TB) {
	t.Helper()
	_, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join("testdata", "crds")}, ErrorIfPathMissing: true,
	})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
}

// expectSame fails unless got and want are equal, showing the first line
// where their indented JSON differs rather than two large dumps.
func expectSame(t testing.TB, got, want any, hint string) {
	t.Helper()
	g, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(g, w) {
		return
	}
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	for i := 0; ; i++ {
		if i >= len(gl) || i >= len(wl) || gl[i] != wl[i] {
			t.Fatalf("%s: they differ at line %d of their JSON:\n  got:  %s\n  want: %s",
				hint, i+1, lineAt(gl, i), lineAt(wl, i))
		}
	}
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return strings.TrimSpace(lines[i])
	}
	return "(end)"
}
