// Command demo shows snowauth doing its whole job on one machine, with no
// cluster and no ServiceNow instance: it starts a real API server (envtest),
// the ServiceNow simulator and the manager as its own process, applies a
// credentials Secret and a ServiceNowConnection, and prints what happens.
//
// Run it with `make demo`. With -ci it exits 0 once the connection is Ready
// and a refresh was observed, and non-zero otherwise.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

const (
	namespace    = "demo"
	connName     = "orders"
	authConnName = "catalog"
	jwtConnName  = "inventory"
	demoUser     = "demo.person"
	demoPassword = "demo-password" // the simulator's; nothing real
	credsName    = "servicenow-credentials"
	clientID     = "snowauth-demo"
	appUser      = "svc.snowauth"
	demoSecret   = "demo-client-secret" // the simulator's; nothing real
	// systemNamespace is the manager's namespace (its default without
	// POD_NAMESPACE), holding keySecretName, the link-signing keys the
	// manager creates, and the authorization hand-overs.
	systemNamespace = "snowauth-system"
	keySecretName   = "snowauth-authorization-key"
)

func main() {
	ci := flag.Bool("ci", false, "exit 0 once the connection is Ready and a refresh was observed; non-zero otherwise")
	manager := flag.String("manager", "bin/manager", "the manager binary to run")
	lifespan := flag.Duration("lifespan", 90*time.Second, "access-token lifespan of the simulated instance")
	timeout := flag.Duration("timeout", 3*time.Minute, "with -ci, how long to wait for Ready and a refresh")
	authCode := flag.Bool("authorization-code", false,
		"also run the authorization server and a connection with the AuthorizationCode grant; with -ci, log in at the simulator and wait for it to be Ready")
	jwt := flag.Bool("jwt", false,
		"also run the authorization server and a connection with the JWTBearer grant, whose managed key the simulator verifies through the published JWKS; with -ci, wait for it to be Ready")
	flag.Parse()

	d := demo{ci: *ci, managerBin: *manager, lifespan: *lifespan, authCode: *authCode, jwt: *jwt}
	if err := d.runUntilSignal(*timeout); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// runUntilSignal runs the demo until Ctrl-C (or, with -ci, success or the
// timeout); every deferred clean-up has run when it returns.
func (d demo) runUntilSignal(timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d.ci {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return run(ctx, d)
}

// demo is what the flags asked for.
type demo struct {
	ci         bool
	managerBin string
	lifespan   time.Duration
	authCode   bool
	jwt        bool
}

// authServer says whether the demo runs the authorization server: the
// AuthorizationCode grant's login and the JWTBearer grant's JWKS need it.
func (d demo) authServer() bool { return d.authCode || d.jwt }

// connections are the names of the connections the demo applies.
func (d demo) connections() []string {
	names := []string{connName}
	if d.authCode {
		names = append(names, authConnName)
	}
	if d.jwt {
		names = append(names, jwtConnName)
	}
	return names
}

func run(ctx context.Context, d demo) (err error) {
	ci, managerBin, lifespan := d.ci, d.managerBin, d.lifespan
	tmp, err := os.MkdirTemp("", "snowauth-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	step("starting a Kubernetes API server (etcd and kube-apiserver from bin/k8s)")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := env.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	kc, err := env.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	done("API server on %s, CRD servicenowconnections.servicenow.snowauth.dev installed", env.Config.Host)

	step("starting the ServiceNow simulator")
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: lifespan, ClientCredentialsEnabled: true})
	if err != nil {
		return err
	}
	defer sim.Close()
	sim.AddUser(simulator.User{Username: appUser, Password: "unused"})
	sim.AddUser(simulator.User{Username: demoUser, Password: demoPassword})
	var authURL string
	if d.authServer() {
		if authURL, err = freeLoopbackURL(); err != nil {
			return err
		}
	}
	oauthClient := simulator.OAuthClient{ID: clientID, Secret: demoSecret, ApplicationUser: appUser, RedirectURL: authURL + "/callback"}
	if d.jwt {
		// The instance's JWT bearer configuration: sub is a user_name,
		// the keys come from snowauth's JWKS URL, the clock skew is the
		// Machine Identity Console's default, 0 s.
		oauthClient.JWT = &simulator.JWTVerifier{JWKSURL: authURL + "/jwks/" + namespace + "/" + jwtConnName + ".json"}
	}
	sim.AddClient(oauthClient)
	instance := sim.LocalhostURL()
	caFile := filepath.Join(tmp, "simulator-ca.pem")
	if err := os.WriteFile(caFile, sim.CACertPEM(), 0o600); err != nil {
		return err
	}
	done("instance %s; access tokens live %s, so snowauth refreshes after about %s", instance, lifespan, (lifespan * 2 / 3).Round(time.Second))

	step("starting the manager (%s)", managerBin)
	logFile := filepath.Join(tmp, "manager.log")
	extra := []string{}
	if d.authServer() {
		// The link-signing key and the hand-overs live in the
		// manager's namespace (POD_NAMESPACE in a cluster).
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}); err != nil {
			return err
		}
		extra = append(extra, "--authorization-external-url="+authURL)
	}
	mgr, err := startManager(managerBin, kubeconfig, caFile, logFile, extra...)
	if err != nil {
		return err
	}
	defer stopManager(mgr)
	done("pid %d, trusting the simulator through --ca-bundle as for an on-premise instance; logs in %s", mgr.Process.Pid, logFile)
	if d.authServer() {
		stop, err := startAuthorizationServer(ctx, env, authURL)
		if err != nil {
			return err
		}
		defer stop()
		done("authorization server (in this process, as cmd/authserver runs it) at %s", authURL)
	}

	step("applying a credentials Secret and a ServiceNowConnection in namespace %s", namespace)
	if err := applySamples(ctx, env.Client, instance, d); err != nil {
		return err
	}
	done("Secret %s (instance, client_id, client_secret) and ServiceNowConnection %s (grant ClientCredentials)", credsName, connName)

	fmt.Println()
	fmt.Println("Try it from another terminal:")
	fmt.Printf("  export KUBECONFIG=%s\n", kubeconfig)
	fmt.Printf("  kubectl get snc -n %s -o wide\n", namespace)
	fmt.Printf("  kubectl get secret -n %s %s-token -o jsonpath='{.data.expires_at}' | base64 -d\n", namespace, connName)
	fmt.Printf("  kubectl annotate snc -n %s %s servicenow.snowauth.dev/refresh-requested-at=\"$(date -Is)\" --overwrite   # force a refresh\n", namespace, connName)
	fmt.Printf("  kubectl patch secret -n %s %s -p '{\"stringData\":{\"client_secret\":\"wrong\"}}'   # break it: watch Ready and RefreshFailed\n", namespace, credsName)
	fmt.Printf("  kubectl patch secret -n %s %s -p '{\"stringData\":{\"client_secret\":\"%s\"}}'   # and mend it\n", namespace, credsName, demoSecret)
	if d.authCode {
		fmt.Printf("  kubectl servicenow authorize -n %s %s   # open the link it prints, log in as %s / %s\n",
			namespace, authConnName, demoUser, demoPassword)
		fmt.Println("  (the simulator's certificate is its own: your browser will warn about it)")
	}
	if d.jwt {
		fmt.Printf("  kubectl get snc -n %s %s -o jsonpath='{.status.jwtBearer.jwksURL}'   # the JWKS URL the instance verifies with\n", namespace, jwtConnName)
		fmt.Printf("  curl -s \"$(kubectl get snc -n %s %s -o jsonpath='{.status.jwtBearer.jwksURL}')\"   # public keys only\n", namespace, jwtConnName)
	}
	if !ci {
		fmt.Println("Press Ctrl-C to stop: the manager, the simulator and the API server stop and the temporary folder is removed.")
	}
	fmt.Println()

	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	if d.authCode && ci {
		if err := authorizeAsAPerson(ctx, env.Client, sim, authURL); err != nil {
			return err
		}
	}
	err = watch(ctx, env, ci, exited, d)
	if err != nil {
		if log, readErr := os.ReadFile(logFile); readErr == nil {
			fmt.Fprintf(os.Stderr, "--- manager log ---\n%s--- end of manager log ---\n", log)
		}
	}
	return err
}

// startManager runs the manager binary against the demo API server, as a
// user would run it against a cluster.
func startManager(bin, kubeconfig, caFile, logFile string, extra ...string) (*exec.Cmd, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s not found: run `make demo`, which builds it (%w)", bin, err)
	}
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), bin, append([]string{
		"--allowed-instance-domains=localhost",
		"--ca-bundle=" + caFile,
		"--health-probe-bind-address=0",
		"--metrics-bind-address=0",
	}, extra...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stopManager asks the manager to stop as Kubernetes would (SIGTERM), and
// kills it if it does not within ten seconds.
func stopManager(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
	defer t.Stop()
	_, _ = cmd.Process.Wait()
}

func applySamples(ctx context.Context, c client.Client, instance string, d demo) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: credsName},
			StringData: map[string]string{"instance": instance, "client_id": clientID, "client_secret": demoSecret},
		},
		&snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: connName},
			Spec: snowv1.ServiceNowConnectionSpec{
				CredentialsSecretRef: snowv1.SecretReference{Name: credsName},
				GrantType:            snowv1.GrantClientCredentials,
				TokenSecret:          snowv1.TokenSecretSpec{Labels: map[string]snowv1.LabelValue{"app.kubernetes.io/part-of": "orders"}},
			},
		},
	}
	if d.jwt {
		objs = append(objs, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: jwtConnName},
			Spec: snowv1.ServiceNowConnectionSpec{
				CredentialsSecretRef: snowv1.SecretReference{Name: credsName},
				GrantType:            snowv1.GrantJWTBearer,
				JWTBearer:            &snowv1.JWTBearerSpec{Subject: demoUser},
			},
		})
	}
	if d.authCode {
		objs = append(objs, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: authConnName},
			Spec: snowv1.ServiceNowConnectionSpec{
				CredentialsSecretRef: snowv1.SecretReference{Name: credsName},
				GrantType:            snowv1.GrantAuthorizationCode,
			},
		})
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// watch prints the connection and its token Secret whenever they change. In
// CI mode it returns nil once the connection is Ready and a second token
// (a refresh) was observed.
func watch(ctx context.Context, env *testenv.Env, ci bool, managerExited <-chan error, d demo) error {
	c := env.Client
	key := types.NamespacedName{Namespace: namespace, Name: connName}
	names := d.connections()
	var last string
	var firstRefresh *metav1.Time
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if ci {
				return errors.New("timed out before the connection was Ready and refreshed once")
			}
			fmt.Println("\nstopping: manager, simulator, API server; removing the temporary folder")
			return nil
		case err := <-managerExited:
			return fmt.Errorf("the manager exited: %w", err)
		case <-ticker.C:
		}
		var conn snowv1.ServiceNowConnection
		if err := c.Get(ctx, key, &conn); err != nil {
			continue
		}
		// What changed is decided from the objects' versions: the table's
		// AGE column changes every second.
		details, versions := "", ""
		for _, name := range names {
			var cn snowv1.ServiceNowConnection
			if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cn); err != nil {
				continue
			}
			var secret corev1.Secret
			hasSecret := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: cn.TokenSecretName()}, &secret) == nil
			details += describe(&cn, &secret, hasSecret)
			versions += cn.ResourceVersion + "/" + secret.ResourceVersion + " "
		}
		if versions != last {
			table, err := testenv.KubectlGet(ctx, env.Config, namespace, true)
			if err != nil {
				table = "kubectl get snc: " + err.Error() + "\n"
			}
			fmt.Printf("── %s  kubectl get snc -o wide\n%s%s\n", time.Now().Format("15:04:05"), table, details)
			last = versions
		}
		st := conn.Status
		if st.LastRefreshTime != nil && firstRefresh == nil && meta.IsStatusConditionTrue(st.Conditions, snowv1.ConditionReady) {
			firstRefresh = st.LastRefreshTime
		}
		if ci && firstRefresh != nil && st.LastRefreshTime != nil && st.LastRefreshTime.After(firstRefresh.Time) &&
			meta.IsStatusConditionTrue(st.Conditions, snowv1.ConditionReady) && allReady(ctx, c, names) {
			fmt.Println("demo: the connection is Ready and its token was refreshed: OK")
			return nil
		}
	}
}

// allReady says whether every named connection is Ready.
func allReady(ctx context.Context, c client.Client, names []string) bool {
	for _, n := range names {
		if !ready(ctx, c, n) {
			return false
		}
	}
	return true
}

// describe renders what the conditions and the token Secret of conn say,
// with the token itself redacted.
func describe(conn *snowv1.ServiceNowConnection, secret *corev1.Secret, hasSecret bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", conn.Name)
	for _, c := range conn.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s (%s): %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	if hasSecret {
		fmt.Fprintf(&b, "  Secret %s: access_token=<redacted, %d bytes> token_type=%s expires_at=%s instance_url=%s\n",
			secret.Name, len(secret.Data[snowv1.TokenKeyAccessToken]), secret.Data[snowv1.TokenKeyTokenType],
			secret.Data[snowv1.TokenKeyExpiresAt], secret.Data[snowv1.TokenKeyInstanceURL])
	}
	if st := conn.Status; st.LastRefreshTime != nil && st.NextRefreshTime != nil {
		fmt.Fprintf(&b, "  last refresh %s, next refresh %s, consecutive failures %d\n",
			st.LastRefreshTime.UTC().Format(time.RFC3339), st.NextRefreshTime.UTC().Format(time.RFC3339), st.ConsecutiveFailures)
	}
	if j := conn.Status.JWTBearer; j != nil && j.JWKSURL != "" {
		fmt.Fprintf(&b, "  assertions signed by key %s, published with %d key(s) at %s\n", j.ActiveKeyID, len(j.Keys), j.JWKSURL)
	}
	return b.String()
}

// ready says whether connection name is Ready.
func ready(ctx context.Context, c client.Client, name string) bool {
	var conn snowv1.ServiceNowConnection
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &conn); err != nil {
		return false
	}
	return meta.IsStatusConditionTrue(conn.Status.Conditions, snowv1.ConditionReady)
}

// authorizeAsAPerson does what a person does in CI mode: asks for a link
// (as kubectl servicenow authorize does), opens it, goes on, logs in at
// the simulator's login page and follows the callback back to snowauth.
func authorizeAsAPerson(ctx context.Context, c client.Client, sim *simulator.Simulator, authURL string) error {
	key := types.NamespacedName{Namespace: namespace, Name: authConnName}
	var conn snowv1.ServiceNowConnection
	if err := c.Get(ctx, key, &conn); err != nil {
		return err
	}
	requested := time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(conn.DeepCopy())
	conn.Annotations = map[string]string{snowv1.AnnotationAuthorizationRequestedAt: requested}
	if err := c.Patch(ctx, &conn, patch); err != nil {
		return err
	}
	var link string
	for link == "" {
		if err := c.Get(ctx, key, &conn); err == nil {
			if a := conn.Status.Authorization; a != nil && a.LastHandledRequest == requested && a.LinkSecretName != "" {
				var secret corev1.Secret
				if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: a.LinkSecretName}, &secret); err == nil {
					link = string(secret.Data[snowv1.AuthorizationKeyURL])
				}
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out waiting for the authorization link")
		case <-time.After(200 * time.Millisecond):
		}
	}
	browser := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool(), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	u, _ := url.Parse(link)
	// Going on from the page the link opens sets the cookie that binds the
	// flow to this browser. (A browser keeps a Secure cookie of
	// http://127.0.0.1; Go's cookie jar does not, so it is carried here.)
	goOn, err := http.NewRequestWithContext(ctx, http.MethodPost, authURL+"/authorize",
		strings.NewReader(url.Values{"state": {u.Query().Get("state")}}.Encode()))
	if err != nil {
		return err
	}
	goOn.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := browser.Do(goOn)
	if err != nil {
		return fmt.Errorf("going on from the link's page: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("the link's page answered %s", resp.Status)
	}
	cookies := resp.Cookies()
	callback, err := sim.Login(ctx, browser, resp.Header.Get("Location"), demoUser, demoPassword, true)
	if err != nil {
		return fmt.Errorf("logging in at the simulator: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, callback.String(), nil)
	if err != nil {
		return err
	}
	for _, k := range cookies {
		req.AddCookie(k)
	}
	resp, err = browser.Do(req)
	if err != nil {
		return fmt.Errorf("following the callback: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the callback answered %s", resp.Status)
	}
	fmt.Printf("── %s\n  a person logged in at ServiceNow and authorised connection %s\n", time.Now().Format("15:04:05"), authConnName)
	return nil
}

// startAuthorizationServer serves the authorization server at authURL, as
// cmd/authserver does, with the keys the manager created.
func startAuthorizationServer(ctx context.Context, env *testenv.Env, authURL string) (func(), error) {
	external, err := authserver.ParseExternalURL(authURL)
	if err != nil {
		return nil, err
	}
	instances, err := servicenow.NewClient(servicenow.Options{AllowedDomains: []string{"localhost"}})
	if err != nil {
		return nil, err
	}
	srv := &authserver.Server{
		Reader: env.Client, Writer: env.Client, Namespace: systemNamespace, Instances: instances, Addr: external.Host,
		Links: &authserver.Links{Keys: authserver.KeysFromSecret(env.Client, systemNamespace, keySecretName), ExternalURL: external},
	}
	serveCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(serveCtx) }()
	return func() {
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "authorization server:", err)
		}
	}, nil
}

// freeLoopbackURL picks a free loopback port for the authorization server.
func freeLoopbackURL() (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return "http://" + l.Addr().String(), nil
}

func step(format string, args ...any) { fmt.Printf("• "+format+"\n", args...) }
func done(format string, args ...any) { fmt.Printf("  ✓ "+format+"\n", args...) }
