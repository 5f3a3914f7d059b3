package install_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// krewManifest is the part of a krew plugin manifest this test reads.
type krewManifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestReleaseWritesVersionedArtifactsThatInstall runs what `make release`
// runs, for this machine's platform only (CI stays short; the other
// platforms are the same build with other GOOS and GOARCH).
func TestReleaseWritesVersionedArtifactsThatInstall(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	raw, err := os.ReadFile(filepath.Join(repo, "VERSION"))
	g.Expect(err).NotTo(HaveOccurred())
	version := strings.TrimSpace(string(raw))
	out := filepath.Join(t.TempDir(), "release")
	platform := runtime.GOOS + "/" + runtime.GOARCH

	cmd := exec.CommandContext(ctx, filepath.Join(repo, "hack", "release.sh"))
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "VERSION="+version, "RELEASE_DIR="+out, "PLATFORMS="+platform,
		"KUSTOMIZE="+tool(t, "KUSTOMIZE", "kustomize", "KUSTOMIZE_VERSION"), "HELM="+tool(t, "HELM", "helm", "HELM_VERSION"))
	logs, err := cmd.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", logs)

	archive := fmt.Sprintf("kubectl-servicenow_v%s_%s_%s.tar.gz", version, runtime.GOOS, runtime.GOARCH)
	chart := "snowauth-" + version + ".tgz"
	entries, err := os.ReadDir(out)
	g.Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	g.Expect(names).To(ConsistOf("install.yaml", "install-crds.yaml", chart, archive, "servicenow.yaml", "checksums.txt", "RELEASE_NOTES.md"))

	// Every checksum holds.
	sums, err := os.ReadFile(filepath.Join(out, "checksums.txt"))
	g.Expect(err).NotTo(HaveOccurred())
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	g.Expect(lines).To(HaveLen(len(names) - 1))
	for _, line := range lines {
		sum, name, ok := strings.Cut(line, "  ")
		g.Expect(ok).To(BeTrue(), line)
		g.Expect(sha256File(t, filepath.Join(out, name))).To(Equal(sum), name)
	}

	// The krew manifest points at the archive, with its checksum.
	var krew krewManifest
	b, err := os.ReadFile(filepath.Join(out, "servicenow.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.Unmarshal(b, &krew)).To(Succeed())
	g.Expect(krew.Kind).To(Equal("Plugin"))
	g.Expect(krew.Metadata.Name).To(Equal("servicenow"))
	g.Expect(krew.Spec.Version).To(Equal("v" + version))
	g.Expect(krew.Spec.Platforms).To(HaveLen(1))
	p := krew.Spec.Platforms[0]
	g.Expect(p.Selector.MatchLabels).To(Equal(map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH}))
	g.Expect(p.URI).To(HaveSuffix("/releases/download/v" + version + "/" + archive))
	g.Expect(p.SHA256).To(Equal(sha256File(t, filepath.Join(out, archive))))

	// The plugin in it says its version.
	bin := extract(t, filepath.Join(out, archive), p.Bin)
	printed, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", printed)
	g.Expect(string(printed)).To(ContainSubstring(version))

	// The manifests name the version, never latest.
	for _, f := range []string{"install.yaml", "install-crds.yaml"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(b)).NotTo(ContainSubstring(":latest"), f)
	}
	b, err = os.ReadFile(filepath.Join(out, "install.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	installed := decodeManifests(t, b)
	g.Expect(field(only(t, installed, "Deployment"), "spec", "template", "spec", "containers")).To(
		ContainElement(HaveKeyWithValue("image", "snowauth/manager:"+version)))

	// The packaged chart installs, with the same image.
	ns := restrictedNamespace(t)
	rendered, err := exec.CommandContext(ctx, tool(t, "HELM", "helm", "HELM_VERSION"),
		"template", "snowauth", filepath.Join(out, chart), "--namespace", ns).Output()
	g.Expect(err).NotTo(HaveOccurred())
	objs := decodeManifests(t, rendered)
	g.Expect(field(only(t, objs, "Deployment"), "spec", "template", "spec", "containers")).To(
		ContainElement(HaveKeyWithValue("image", "snowauth/manager:"+version)))
	deleteAfterTest(t, objs)
	g.Expect(apply(ctx, env.Client, objs)).To(Succeed())

	// The release notes are the changelog's section for this version.
	notes, err := os.ReadFile(filepath.Join(out, "RELEASE_NOTES.md"))
	g.Expect(err).NotTo(HaveOccurred())
	changelog, err := os.ReadFile(filepath.Join(repo, "CHANGELOG.md"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(changelog)).To(ContainSubstring("## [" + version + "]"))
	g.Expect(string(changelog)).To(ContainSubstring(strings.TrimSpace(string(notes))))
	g.Expect(string(notes)).NotTo(ContainSubstring("## ["), "only this version's section")
}

func TestReleaseRefusesAVersionThatIsNotTheVersionFile(t *testing.T) {
	cmd := exec.CommandContext(context.Background(), filepath.Join(repo, "hack", "release.sh"))
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "VERSION=99.0.0", "RELEASE_DIR="+t.TempDir(), "KUSTOMIZE=unused", "HELM=unused")
	out, err := cmd.CombinedOutput()
	NewWithT(t).Expect(err).To(HaveOccurred())
	NewWithT(t).Expect(string(out)).To(ContainSubstring("is not the version in the VERSION file"))
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	h := sha256.New()
	_, err = io.Copy(h, f)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return hex.EncodeToString(h.Sum(nil))
}

// extract writes file name of a .tar.gz into a temporary folder.
func extract(t *testing.T, archive, name string) string {
	t.Helper()
	g := NewWithT(t)
	f, err := os.Open(archive)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	g.Expect(err).NotTo(HaveOccurred())
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		g.Expect(err).NotTo(HaveOccurred(), "%s has no %s", archive, name)
		if h.Name != name {
			continue
		}
		path := filepath.Join(t.TempDir(), name)
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = io.Copy(out, tr) //nolint:gosec // a test's own archive
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.Close()).To(Succeed())
		return path
	}
}
