package credentials_test

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

func TestParse(t *testing.T) {
	resolver, err := servicenow.NewClient(servicenow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn := func(grant snowv1.GrantType) *snowv1.ServiceNowConnection {
		return &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "orders"},
			Spec:       snowv1.ServiceNowConnectionSpec{GrantType: grant, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
		}
	}
	secret := func(data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "creds", ResourceVersion: "42"}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	client := map[string]string{"instance": " dev98042\n", "client_id": " orders-client\n", "client_secret": " s3cret \n"}

	t.Run("reads the client, trims what editors add and resolves the instance once", func(t *testing.T) {
		g := NewWithT(t)
		c, err := credentials.Parse(conn(snowv1.GrantClientCredentials), secret(client), resolver)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Instance.String()).To(Equal("https://dev98042.service-now.com"))
		g.Expect(c.Grant).To(Equal(servicenow.GrantClientCredentials))
		g.Expect(c.Client.ClientID).To(Equal("orders-client"))
		g.Expect(c.Client.ClientSecret).To(Equal(" s3cret "), "a secret keeps its spaces: only the newline is an editor's")
		g.Expect(c.Version).To(Equal("42"))
	})
	t.Run("reads the user and password of the password grant", func(t *testing.T) {
		g := NewWithT(t)
		data := map[string]string{"username": "svc.orders\n", "password": "pw\n"}
		for k, v := range client {
			data[k] = v
		}
		c, err := credentials.Parse(conn(snowv1.GrantPassword), secret(data), resolver)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Grant).To(Equal(servicenow.GrantPassword))
		g.Expect(c.Client.Username).To(Equal("svc.orders"))
		g.Expect(c.Client.Password).To(Equal("pw"))
	})
	t.Run("needs no refresh token in the credentials for the AuthorizationCode grant", func(t *testing.T) {
		g := NewWithT(t)
		c, err := credentials.Parse(conn(snowv1.GrantAuthorizationCode), secret(client), resolver)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Grant).To(Equal(servicenow.GrantRefreshToken))
	})
	for _, tc := range []struct {
		name       string
		grant      snowv1.GrantType
		secret     *corev1.Secret
		wantReason string
		wantMsg    string
	}{
		{"reports a missing Secret by name and namespace", snowv1.GrantClientCredentials, nil,
			snowv1.ReasonCredentialsNotFound, "credentials Secret creds not found in namespace team-a"},
		{"names the key a grant needs and the Secret lacks", snowv1.GrantRefreshToken, secret(client),
			snowv1.ReasonCredentialsInvalid, `credentials Secret creds has no key "refresh_token", which the RefreshToken grant needs`},
		{"reports a key that holds only blanks", snowv1.GrantClientCredentials,
			secret(map[string]string{"instance": "dev98042", "client_id": " \n", "client_secret": "x"}),
			snowv1.ReasonCredentialsInvalid, `key "client_id" of credentials Secret creds is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := credentials.Parse(conn(tc.grant), tc.secret, resolver)
			var ce *credentials.Error
			g.Expect(errors.As(err, &ce)).To(BeTrue(), "%v", err)
			g.Expect(ce.Reason).To(Equal(tc.wantReason))
			g.Expect(err).To(MatchError(tc.wantMsg))
		})
	}
	t.Run("refuses an instance outside the allowed domains without quoting the credentials", func(t *testing.T) {
		g := NewWithT(t)
		data := map[string]string{"instance": "https://evil.example.com", "client_id": "id", "client_secret": "s3cret"}
		_, err := credentials.Parse(conn(snowv1.GrantClientCredentials), secret(data), resolver)
		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance))
		g.Expect(err.Error()).NotTo(ContainSubstring("s3cret"))
	})
}
