// Command authserver is snowauth's authorization server for the
// AuthorizationCode grant: the pages a person's browser meets when
// authorising a connection at ServiceNow. It runs as its own Deployment,
// with its own ServiceAccount, which reads connections and creates
// hand-over Secrets in its own namespace and nothing else: it holds no
// client secret and reads no credentials Secret. The manager mints the
// links and exchanges the codes (internal/authserver).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/version"
)

func main() {
	var (
		addr, externalURL, keyDir, keySecret, namespace, allowed string
		qps                                                      float64
	)
	flag.StringVar(&addr, "bind-address", ":8082", "Address the server listens on (HTTP; TLS ends at the Ingress).")
	flag.StringVar(&externalURL, "external-url", "",
		"Base URL at which browsers reach this server, e.g. https://snowauth.example.com, the manager's --authorization-external-url. "+
			"A path prefix is served under. Required.")
	flag.StringVar(&keyDir, "key-dir", "",
		"Folder holding the link-signing keys (files key and previous): the manager's key Secret, mounted.")
	flag.StringVar(&keySecret, "key-secret", "",
		"Instead of --key-dir: read the keys from this Secret in --namespace (needs get on it).")
	flag.StringVar(&namespace, "namespace", "", "Namespace of the hand-over Secrets (default: the Pod's namespace).")
	flag.StringVar(&allowed, "allowed-instance-domains", strings.Join(servicenow.DefaultAllowedDomains, ","),
		"Comma-separated domain suffixes instances may use, as the manager's: browsers are sent only to these hosts.")
	flag.Float64Var(&qps, "kube-api-qps", 20, "Sustained queries per second to the Kubernetes API.")
	printVersion := flag.Bool("version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *printVersion {
		v := version.Get()
		fmt.Printf("snowauth authserver %s (revision %s, %s)\n", v.Version, v.Revision, v.GoVersion)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(addr, externalURL, keyDir, keySecret, namespace, allowed, qps); err != nil {
		ctrl.Log.WithName("setup").Error(err, "authorization server stopped")
		os.Exit(1)
	}
}

func run(addr, externalURL, keyDir, keySecret, namespace, allowed string, qps float64) error {
	external, err := authserver.ParseExternalURL(externalURL)
	if err != nil {
		return fmt.Errorf("--external-url: %w", err)
	}
	if namespace == "" {
		namespace = os.Getenv("POD_NAMESPACE")
	}
	if namespace == "" {
		return fmt.Errorf("--namespace (or POD_NAMESPACE) is required")
	}
	instances, err := servicenow.NewClient(servicenow.Options{AllowedDomains: splitList(allowed)})
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(snowv1.AddToScheme(scheme))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(qps), int(2*qps)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	var keys authserver.KeySource
	switch {
	case keyDir != "" && keySecret == "":
		keys = authserver.KeysFromDir(keyDir)
	case keySecret != "" && keyDir == "":
		keys = authserver.KeysFromSecret(c, namespace, keySecret)
	default:
		return fmt.Errorf("give one of --key-dir and --key-secret")
	}
	links := &authserver.Links{Keys: keys, ExternalURL: external}
	srv := &authserver.Server{Reader: c, Writer: c, Namespace: namespace, Links: links, Instances: instances, Addr: addr, Wait: 25 * time.Second}
	ctrl.Log.WithName("setup").Info("serving", "version", version.Get().Version, "address", addr,
		"redirectURL", links.RedirectURI(), "namespace", namespace)
	return srv.Start(ctrl.SetupSignalHandler())
}

// splitList splits a comma-separated flag, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
