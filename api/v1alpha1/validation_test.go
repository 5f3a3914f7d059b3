package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Run(m, &env) }

// minimal returns the smallest connection a user can apply.
func minimal(ns, name string) *snowv1.ServiceNowConnection {
	return &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: snowv1.ServiceNowConnectionSpec{
			CredentialsSecretRef: snowv1.SecretReference{Name: "servicenow-credentials"},
		},
	}
}

func TestAPIServerServesTheKindWithItsShortNames(t *testing.T) {
	g := NewWithT(t)
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	resources, err := dc.ServerResourcesForGroupVersion(snowv1.GroupVersion.String())
	g.Expect(err).NotTo(HaveOccurred())

	var found *metav1.APIResource
	for i := range resources.APIResources {
		if resources.APIResources[i].Name == "servicenowconnections" {
			found = &resources.APIResources[i]
		}
	}
	g.Expect(found).NotTo(BeNil(), "servicenowconnections is not served")
	g.Expect(found.Kind).To(Equal("ServiceNowConnection"))
	g.Expect(found.Namespaced).To(BeTrue())
	g.Expect(found.ShortNames).To(ConsistOf("snc", "snowconn"))
}

func TestMinimalConnectionIsAcceptedAndDefaulted(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := minimal(ns, "orders")
	g.Expect(env.Client.Create(context.Background(), conn)).To(Succeed())

	var got snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(conn), &got)).To(Succeed())
	g.Expect(got.Spec.GrantType).To(Equal(snowv1.GrantClientCredentials), "grantType defaults to ClientCredentials")
	g.Expect(got.Status.ObservedGeneration).To(Equal(int64(-1)), "observedGeneration is -1 until the operator looks")
	g.Expect(got.TokenSecretName()).To(Equal("orders-token"))
}

func TestEveryGrantWithAllOptionalFieldsIsAccepted(t *testing.T) {
	for _, grant := range []snowv1.GrantType{snowv1.GrantClientCredentials, snowv1.GrantPassword, snowv1.GrantRefreshToken, snowv1.GrantAuthorizationCode, snowv1.GrantJWTBearer} {
		t.Run(string(grant), func(t *testing.T) {
			g := NewWithT(t)
			conn := minimal(env.Namespace(t), "full")
			conn.Spec.GrantType = grant
			conn.Spec.Scopes = []string{"useraccount", "x_acme.read"}
			conn.Spec.RefreshBefore = &metav1.Duration{Duration: 15 * time.Minute}
			conn.Spec.ClientSecretMaxAge = &metav1.Duration{Duration: 180 * 24 * time.Hour}
			conn.Spec.ExpiryWarning = &metav1.Duration{Duration: 14 * 24 * time.Hour}
			if grant == snowv1.GrantRefreshToken {
				conn.Spec.RefreshToken = &snowv1.RefreshTokenSpec{Lifespan: &metav1.Duration{Duration: 2400 * time.Hour}}
			}
			conn.Spec.Suspend = true
			conn.Spec.Probe = &snowv1.ProbeSpec{Paths: []string{"/api/now/table/incident?sysparm_limit=1"}}
			conn.Spec.RevokeOnDelete = true
			if grant == snowv1.GrantAuthorizationCode {
				conn.Spec.AuthorizationCode = &snowv1.AuthorizationCodeSpec{
					RefreshTokenLifespan: &metav1.Duration{Duration: 2400 * time.Hour},
					ReauthorizeBefore:    &metav1.Duration{Duration: 336 * time.Hour},
				}
			}
			if grant == snowv1.GrantJWTBearer {
				conn.Spec.JWTBearer = &snowv1.JWTBearerSpec{
					Subject: "svc.orders", Audience: "orders-client", Algorithm: snowv1.JWTES256,
					AssertionLifetime: &metav1.Duration{Duration: 2 * time.Minute}, ClockTolerance: &metav1.Duration{Duration: time.Minute},
					SigningKey: snowv1.SigningKeyManaged,
					Rotation:   &snowv1.KeyRotationSpec{Every: &metav1.Duration{Duration: 720 * time.Hour}, PublishAhead: &metav1.Duration{Duration: 24 * time.Hour}},
				}
			}
			conn.Spec.TokenSecret = snowv1.TokenSecretSpec{
				Name:        "orders-servicenow-token",
				Labels:      map[string]snowv1.LabelValue{"team": "orders", "example.com/tier": "gold"},
				Annotations: map[string]string{"reflector.v1.k8s.emberstack.com/reflection-allowed": "true"},
			}
			g.Expect(env.Client.Create(context.Background(), conn)).To(Succeed())
		})
	}
}

// TestAdmissionRejectsBadInputWithAClearMessage holds one case per admission
// rule; each asserts the message a user sees from kubectl.
func TestAdmissionRejectsBadInputWithAClearMessage(t *testing.T) {
	cases := []struct {
		name     string
		connName string
		mutate   func(*snowv1.ServiceNowConnection)
		message  string
	}{
		{
			name:    "rejects a credentials Secret name with upper-case letters",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.CredentialsSecretRef.Name = "ServiceNow_Creds" },
			message: "must be a valid Secret name",
		},
		{
			name:    "rejects an empty credentials Secret name",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.CredentialsSecretRef.Name = "" },
			message: "spec.credentialsSecretRef.name",
		},
		{
			name:    "rejects a token Secret name ending in a dash",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.TokenSecret.Name = "token-" },
			message: "must be a valid Secret name",
		},
		{
			name:    "rejects an unknown grant type",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = "Implicit" },
			message: `Unsupported value: "Implicit"`,
		},
		{
			name: "rejects refreshBefore below one minute",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.RefreshBefore = &metav1.Duration{Duration: 30 * time.Second}
			},
			message: "refreshBefore must be between 1m and 24h",
		},
		{
			name: "rejects refreshBefore above 24 hours",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.RefreshBefore = &metav1.Duration{Duration: 25 * time.Hour}
			},
			message: "refreshBefore must be between 1m and 24h",
		},
		{
			name: "rejects a token Secret label under the operator's prefix",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"servicenow.snowauth.dev/connection": "other"}
			},
			message: "label keys under servicenow.snowauth.dev/ and the key app.kubernetes.io/managed-by are reserved for snowauth",
		},
		{
			name: "rejects a token Secret managed-by label",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"app.kubernetes.io/managed-by": "helm"}
			},
			message: "are reserved for snowauth",
		},
		{
			name: "rejects a token Secret annotation under the operator's prefix",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Annotations = map[string]string{"servicenow.snowauth.dev/refresh-requested-at": "now"}
			},
			message: "annotation keys under servicenow.snowauth.dev/ and the key app.kubernetes.io/managed-by are reserved for snowauth",
		},
		{
			name: "rejects a token Secret label key that Kubernetes would refuse",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"has space": "x"}
			},
			message: "label keys must be qualified names",
		},
		{
			name: "rejects a token Secret label key whose prefix has upper-case letters",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"Example.com/team": "orders"}
			},
			message: "label keys must be qualified names: an optional prefix of at most 253 characters (a DNS subdomain: lower-case letters, digits, '-' and '.') and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
		},
		{
			name: "rejects a token Secret label key whose prefix is longer than 253 characters",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{subdomain(254) + "/team": "orders"}
			},
			message: "label keys must be qualified names",
		},
		{
			name: "rejects a token Secret annotation key with a space",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Annotations = map[string]string{"example.com/ops note": "rotated by the platform team"}
			},
			message: "annotation keys must be qualified names: an optional prefix of at most 253 characters (a DNS subdomain: lower-case letters, digits, '-' and '.') and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
		},
		{
			name: "rejects a token Secret annotation key whose prefix has upper-case letters",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Annotations = map[string]string{"Example.com/owner": "orders"}
			},
			message: "annotation keys must be qualified names",
		},
		{
			name: "rejects a token Secret annotation key whose prefix is longer than 253 characters",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Annotations = map[string]string{subdomain(254) + "/owner": "orders"}
			},
			message: "annotation keys must be qualified names",
		},
		{
			name: "rejects token Secret annotations larger than Kubernetes allows on the Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Annotations = map[string]string{
					"example.com/a": strings.Repeat("x", 131072),
					"example.com/b": strings.Repeat("x", 131072),
				}
			},
			message: "annotations must total at most 261120 characters (255 KiB) of keys and values: Kubernetes limits a Secret's annotations to 256 KiB and snowauth adds its own; shorten or remove some",
		},
		{
			name: "rejects a token Secret named like the refresh-token Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Name = "orders-refresh-token"
			},
			message: "spec.tokenSecret.name must not be <connection name>-refresh-token: snowauth reserves that Secret for the refresh token of the AuthorizationCode grant; choose another name",
		},
		{
			name: "rejects an AuthorizationCode token Secret named like its refresh-token Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantAuthorizationCode
				c.Spec.TokenSecret.Name = "orders-refresh-token"
			},
			message: "spec.tokenSecret.name must not be <connection name>-refresh-token",
		},
		{
			name: "rejects an AuthorizationCode credentials Secret named like its refresh-token Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantAuthorizationCode
				c.Spec.CredentialsSecretRef.Name = "orders-refresh-token"
			},
			message: "spec.credentialsSecretRef.name must not be <connection name>-refresh-token with grantType AuthorizationCode: snowauth keeps the refresh token in that Secret; rename the credentials Secret",
		},
		{
			name: "rejects a token Secret label value with a space",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"team": "orders team"}
			},
			message: "label values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
		},
		{
			name: "rejects a token Secret label value longer than 63 characters",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"team": snowv1.LabelValue(strings.Repeat("x", 64))}
			},
			message: "spec.tokenSecret.labels.team: Too long: may not be more than 63",
		},
		{
			name: "rejects a token Secret that is the credentials Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Name = c.Spec.CredentialsSecretRef.Name
			},
			message: "tokenSecret.name must differ from credentialsSecretRef.name",
		},
		{
			name:     "rejects a default token Secret name that is the credentials Secret",
			connName: "servicenow",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.CredentialsSecretRef.Name = "servicenow-token"
			},
			message: "the default token Secret name <connection name>-token equals credentialsSecretRef.name",
		},
		{
			name:     "rejects a connection name too long for the default token Secret name",
			connName: strings.Repeat("a", 250),
			mutate:   func(*snowv1.ServiceNowConnection) {},
			message:  "the connection name is too long for the default token Secret name",
		},
		{
			name: "rejects authorizationCode settings on another grant",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.AuthorizationCode = &snowv1.AuthorizationCodeSpec{ReauthorizeBefore: &metav1.Duration{Duration: time.Hour}}
			},
			message: "authorizationCode applies only to grantType AuthorizationCode",
		},
		{
			name: "rejects a refresh-token lifespan under an hour",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantAuthorizationCode
				c.Spec.AuthorizationCode = &snowv1.AuthorizationCodeSpec{RefreshTokenLifespan: &metav1.Duration{Duration: time.Minute}}
			},
			message: "refreshTokenLifespan must be at least 1h",
		},
		{
			name:     "rejects an AuthorizationCode connection name too long for its refresh-token Secret",
			connName: strings.Repeat("a", 240),
			mutate:   func(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantAuthorizationCode },
			message:  "too long for the refresh-token Secret",
		},
		{
			name: "rejects jwtBearer settings on another grant",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{Subject: "svc.orders"}
			},
			message: "jwtBearer applies only to grantType JWTBearer",
		},
		{
			name: "rejects a rotation of a provided key",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{SigningKey: snowv1.SigningKeyProvided,
					Rotation: &snowv1.KeyRotationSpec{Every: &metav1.Duration{Duration: 48 * time.Hour}}}
			},
			message: "rotation applies only to signingKey Managed",
		},
		{
			name: "rejects publishing a key ahead for longer than it signs",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{Rotation: &snowv1.KeyRotationSpec{
					Every: &metav1.Duration{Duration: 2 * time.Hour}, PublishAhead: &metav1.Duration{Duration: 3 * time.Hour}}}
			},
			message: "publishAhead must be shorter than every",
		},
		{
			name: "rejects a rotation shorter than the default publishAhead",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{Rotation: &snowv1.KeyRotationSpec{Every: &metav1.Duration{Duration: 12 * time.Hour}}}
			},
			message: "publishAhead must be shorter than every (defaults: publishAhead 24h",
		},
		{
			name: "rejects a key rotation more often than hourly",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{Rotation: &snowv1.KeyRotationSpec{Every: &metav1.Duration{Duration: time.Minute}}}
			},
			message: "rotation.every must be at least 1h",
		},
		{
			name: "rejects an assertion lifetime over an hour",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{AssertionLifetime: &metav1.Duration{Duration: 2 * time.Hour}}
			},
			message: "assertionLifetime must be between 30s and 1h",
		},
		{
			name: "rejects a clock tolerance over ten minutes",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{ClockTolerance: &metav1.Duration{Duration: time.Hour}}
			},
			message: "clockTolerance must be at most 10m",
		},
		{
			name: "rejects an unknown JWT algorithm",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.JWTBearer = &snowv1.JWTBearerSpec{Algorithm: "HS256"}
			},
			message: "Unsupported value: \"HS256\"",
		},
		{
			name: "rejects a token Secret named like the signing-keys Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Name = "orders-signing-keys"
			},
			message: "spec.tokenSecret.name must not be <connection name>-signing-keys",
		},
		{
			name: "rejects a JWTBearer credentials Secret named like its signing-keys Secret",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantJWTBearer
				c.Spec.CredentialsSecretRef.Name = "orders-signing-keys"
			},
			message: "spec.credentialsSecretRef.name must not be <connection name>-signing-keys with grantType JWTBearer",
		},
		{
			name:     "rejects a JWTBearer connection name too long for its signing-keys Secret",
			connName: strings.Repeat("a", 241),
			mutate:   func(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantJWTBearer },
			message:  "too long for the signing-keys Secret",
		},
		{
			name: "rejects refreshToken settings on another grant",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.RefreshToken = &snowv1.RefreshTokenSpec{Lifespan: &metav1.Duration{Duration: 2400 * time.Hour}}
			},
			message: "refreshToken applies only to grantType RefreshToken",
		},
		{
			name: "rejects a refresh token lifespan under an hour",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.GrantType = snowv1.GrantRefreshToken
				c.Spec.RefreshToken = &snowv1.RefreshTokenSpec{Lifespan: &metav1.Duration{Duration: time.Minute}}
			},
			message: "refreshToken.lifespan must be at least 1h",
		},
		{
			name: "rejects a client secret maximum age under a day",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.ClientSecretMaxAge = &metav1.Duration{Duration: time.Hour}
			},
			message: "clientSecretMaxAge must be at least 24h",
		},
		{
			name:    "rejects an expiry warning under an hour",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.ExpiryWarning = &metav1.Duration{Duration: time.Minute} },
			message: "expiryWarning must be at least 1h",
		},
		{
			name:    "rejects a zero refreshBefore",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.RefreshBefore = &metav1.Duration{Duration: 0} },
			message: "refreshBefore must be between 1m and 24h",
		},
		{
			name:    "rejects a scope with a space",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.Scopes = []string{"useraccount admin"} },
			message: "a scope is one word of printable characters",
		},
		{
			name:    "rejects the same scope twice",
			mutate:  func(c *snowv1.ServiceNowConnection) { c.Spec.Scopes = []string{"useraccount", "useraccount"} },
			message: "Duplicate value",
		},
		{
			name: "rejects revokeOnDelete with a token Secret that is retained",
			mutate: func(c *snowv1.ServiceNowConnection) {
				c.Spec.RevokeOnDelete = true
				c.Spec.TokenSecret.DeletionPolicy = snowv1.TokenSecretRetain
			},
			message: "revokeOnDelete cannot be combined with tokenSecret.deletionPolicy Retain",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			name := tc.connName
			if name == "" {
				name = "orders"
			}
			conn := minimal(env.Namespace(t), name)
			tc.mutate(conn)
			err := env.Client.Create(context.Background(), conn)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected an Invalid error, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}

// TestProbePathsAreAdmittedOnlyWhenTheyArePathsOfTheInstance: spec.probe
// takes REST paths relative to the instance, nothing that could send the
// token elsewhere or load the instance, each refusal with its reason.
func TestProbePathsAreAdmittedOnlyWhenTheyArePathsOfTheInstance(t *testing.T) {
	probe := func(paths ...string) func(*snowv1.ServiceNowConnection) {
		return func(c *snowv1.ServiceNowConnection) { c.Spec.Probe = &snowv1.ProbeSpec{Paths: paths} }
	}
	t.Run("accepts REST paths of the instance", func(t *testing.T) {
		g := NewWithT(t)
		conn := minimal(env.Namespace(t), "orders")
		probe(
			"/api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id,number",
			"/api/now/v2/table/sc_req_item?sysparm_query=active%3Dtrue%5Epriority%3D1&sysparm_limit=10",
			"/api/x_acme_orders/v1/health",
			"/api/now/table/sys_user/0123456789abcdef0123456789abcdef",
		)(conn)
		g.Expect(env.Client.Create(context.Background(), conn)).To(Succeed())
	})

	for _, tc := range []struct {
		name    string
		mutate  func(*snowv1.ServiceNowConnection)
		message string
	}{
		{"rejects an absolute URL", probe("https://evil.example.com/api/now/table/incident?sysparm_limit=1"), "starting with /api/"},
		{"rejects another host", probe("//evil.example.com/api/now/table/incident?sysparm_limit=1"), "starting with /api/"},
		{"rejects a path outside the REST API", probe("/oauth_token.do"), "starting with /api/"},
		{"rejects a relative path without a slash", probe("api/now/table/incident?sysparm_limit=1"), "starting with /api/"},
		{"rejects ..", probe("/api/now/../../oauth_token.do"), "must not hold .."},
		{"rejects a . segment", probe("/api/./now/table/incident?sysparm_limit=1"), "a . segment"},
		{"rejects an encoded dot", probe("/api/now/%2e%2e/oauth_token.do"), "encoded dot, slash or backslash"},
		{"rejects an encoded slash", probe("/api/now/table%2Fincident"), "encoded dot, slash or backslash"},
		{"rejects an empty segment", probe("/api//now/table/incident?sysparm_limit=1"), "an empty segment (//)"},
		{"rejects a fragment", probe("/api/now/table/incident?sysparm_limit=1#top"), "no spaces, quotes or fragment"},
		{"rejects a space", probe("/api/now/table/incident?sysparm_limit=1&sysparm_query=name=a b"), "no spaces, quotes or fragment"},
		{"rejects an unescaped caret, saying how to write it", probe("/api/now/table/incident?sysparm_limit=1&sysparm_query=active=true^priority=1"), "^ as %5E"},
		{"rejects a backslash", probe("/api/now/table/incident\\x?sysparm_limit=1"), "no spaces, quotes or fragment"},
		{"rejects a broken escape", probe("/api/now/table/incident?sysparm_limit=1&q=%zz"), "%XX escapes"},
		{"rejects a Table API query without sysparm_limit", probe("/api/now/table/incident"), "must set sysparm_limit from 1 to 10"},
		{"rejects a Table API query reading many records", probe("/api/now/v2/table/incident?sysparm_limit=1000"), "must set sysparm_limit from 1 to 10"},
		{"rejects sysparm_limit=0", probe("/api/now/table/incident?sysparm_limit=0"), "must set sysparm_limit from 1 to 10"},
		{"rejects more than 4 paths", probe("/api/a", "/api/b", "/api/c", "/api/d", "/api/e"), "must have at most 4 items"},
		{"rejects an empty list", probe(), "spec.probe.paths"},
		{"rejects the same path twice", probe("/api/a", "/api/a"), "Duplicate value"},
		{"rejects a path longer than 256 characters", probe("/api/" + strings.Repeat("a", 252)), "256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			conn := minimal(env.Namespace(t), "orders")
			tc.mutate(conn)
			err := env.Client.Create(context.Background(), conn)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected an Invalid error, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}

// subdomain returns a valid DNS subdomain of n characters: labels of 62
// letters joined by dots.
func subdomain(n int) string {
	b := []byte(strings.Repeat("a", n))
	for i := 62; i < n-1; i += 63 {
		b[i] = '.'
	}
	return string(b)
}

// TestTokenSecretKeysAreAdmittedExactlyWhenKubernetesAcceptsThemOnASecret
// checks the label and annotation key rules against the API server's own
// validation of a Secret: a key that admission accepts must not make the
// token Secret fail later, and a key a Secret could carry must not be refused.
func TestTokenSecretKeysAreAdmittedExactlyWhenKubernetesAcceptsThemOnASecret(t *testing.T) {
	keys := []struct {
		name  string
		key   string
		valid bool
	}{
		{"a prefixed key such as example.com/owner is accepted", "example.com/owner", true},
		{"a key without a prefix such as team is accepted", "team", true},
		{"a key with dots, dashes and underscores such as a.b/c_d.e-f is accepted", "a.b/c_d.e-f", true},
		{"a one-character key is accepted", "A", true},
		{"upper-case letters in the name part are accepted", "Team.Name", true},
		{"a name part of 63 characters is accepted", strings.Repeat("n", 63), true},
		{"a 253-character prefix with a 63-character name is accepted", subdomain(253) + "/" + strings.Repeat("n", 63), true},
		{"a key with a space such as example.com/ops note is rejected", "example.com/ops note", false},
		{"an upper-case prefix is rejected", "Example.com/team", false},
		{"an underscore in the prefix is rejected", "example_com/team", false},
		{"a prefix longer than 253 characters is rejected", subdomain(254) + "/team", false},
		{"a name part longer than 63 characters after a prefix is rejected", "example.com/" + strings.Repeat("n", 64), false},
		{"a key longer than 63 characters without a prefix is rejected", strings.Repeat("n", 64), false},
		{"an empty prefix is rejected", "/team", false},
		{"an empty name part is rejected", "example.com/", false},
		{"a second slash is rejected", "a/b/c", false},
		{"a name starting with a dash is rejected", "-team", false},
		{"a name ending with an underscore is rejected", "team_", false},
		{"a prefix ending with a dot is rejected", "example.com./team", false},
	}
	for _, tc := range keys {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			ns := env.Namespace(t)

			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
				Namespace:   ns,
				Name:        "plain",
				Labels:      map[string]string{tc.key: "x"},
				Annotations: map[string]string{tc.key: "x"},
			}}
			secretErr := env.Client.Create(ctx, secret)
			g.Expect(secretErr == nil).To(Equal(tc.valid), "a Secret with this label and annotation key: %v", secretErr)

			asLabel := minimal(ns, "label")
			asLabel.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{tc.key: "x"}
			asAnnotation := minimal(ns, "annotation")
			asAnnotation.Spec.TokenSecret.Annotations = map[string]string{tc.key: "x"}
			for _, conn := range []*snowv1.ServiceNowConnection{asLabel, asAnnotation} {
				err := env.Client.Create(ctx, conn)
				if tc.valid {
					g.Expect(err).NotTo(HaveOccurred(), "connection %s", conn.Name)
				} else {
					g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "connection %s: expected an Invalid error, got %v", conn.Name, err)
					g.Expect(err.Error()).To(ContainSubstring("keys must be qualified names"))
				}
			}
		})
	}
}

// TestTokenSecretAnnotationsUpToTheLimitFitOnTheSecret fills the annotations
// to exactly the admitted total and checks that the token Secret, with the
// annotation snowauth adds, is still accepted by the API server.
func TestTokenSecretAnnotationsUpToTheLimitFitOnTheSecret(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	const limit = 261120
	annotations := map[string]string{
		"example.com/a": strings.Repeat("x", 131072),
		"example.com/b": strings.Repeat("x", limit-2*len("example.com/a")-131072),
	}
	total := 0
	for k, v := range annotations {
		total += len(k) + len(v)
	}
	g.Expect(total).To(Equal(limit))

	conn := minimal(ns, "orders")
	conn.Spec.TokenSecret.Annotations = annotations
	g.Expect(env.Client.Create(ctx, conn)).To(Succeed())

	onSecret := map[string]string{"servicenow.snowauth.dev/token-sha256": strings.Repeat("f", 64)}
	for k, v := range annotations {
		onSecret[k] = v
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: conn.TokenSecretName(), Annotations: onSecret}}
	g.Expect(env.Client.Create(ctx, secret)).To(Succeed())
}

func TestRefreshTokenSecretNameIsFreeForOtherUses(t *testing.T) {
	t.Run("the default token Secret of an AuthorizationCode connection is accepted", func(t *testing.T) {
		g := NewWithT(t)
		conn := minimal(env.Namespace(t), "orders")
		conn.Spec.GrantType = snowv1.GrantAuthorizationCode
		g.Expect(env.Client.Create(context.Background(), conn)).To(Succeed())
		g.Expect(conn.TokenSecretName()).NotTo(Equal(conn.RefreshTokenSecretName()))
	})
	t.Run("a RefreshToken connection may read its credentials from <name>-refresh-token", func(t *testing.T) {
		g := NewWithT(t)
		conn := minimal(env.Namespace(t), "orders")
		conn.Spec.GrantType = snowv1.GrantRefreshToken
		conn.Spec.CredentialsSecretRef.Name = "orders-refresh-token"
		g.Expect(env.Client.Create(context.Background(), conn)).To(Succeed())
	})
}

func TestStatusIsWrittenOnlyThroughTheStatusSubresource(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	conn := minimal(env.Namespace(t), "orders")
	g.Expect(env.Client.Create(ctx, conn)).To(Succeed())

	expires := metav1.NewTime(time.Now().Add(30 * time.Minute).Truncate(time.Second))
	conn.Status.ObservedGeneration = conn.Generation
	conn.Status.ExpiresAt = &expires
	conn.Status.TokenSecretName = "orders-token"
	conn.Status.ConsecutiveFailures = 2
	conn.Status.Conditions = []metav1.Condition{{
		Type: snowv1.ConditionReady, Status: metav1.ConditionTrue, Reason: snowv1.ReasonTokenValid,
		Message: "token valid", ObservedGeneration: conn.Generation, LastTransitionTime: metav1.Now(),
	}}
	g.Expect(env.Client.Status().Update(ctx, conn)).To(Succeed())

	var got snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(conn), &got)).To(Succeed())
	g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", expires.Time))
	g.Expect(got.Status.TokenSecretName).To(Equal("orders-token"))
	g.Expect(got.Status.ConsecutiveFailures).To(Equal(int32(2)))
	g.Expect(got.Status.Conditions).To(HaveLen(1))
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))

	// A spec update carrying a different status leaves the status alone, so
	// a user's `kubectl apply` never overwrites what the operator reported.
	got.Spec.Suspend = true
	got.Status.TokenSecretName = "forged"
	g.Expect(env.Client.Update(ctx, &got)).To(Succeed())
	var after snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(conn), &after)).To(Succeed())
	g.Expect(after.Spec.Suspend).To(BeTrue())
	g.Expect(after.Status.TokenSecretName).To(Equal("orders-token"))
	g.Expect(after.Generation).To(BeNumerically(">", conn.Generation), "a spec change bumps the generation")
}
