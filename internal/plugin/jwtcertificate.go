package plugin

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

func newJWTCertificateCommand(s *session) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jwt-certificate NAME",
		Short: "Print the certificate of a JWTBearer connection's provided key, for the instance's JWT verifier map",
		Long: "Print status.jwtBearer.certificate of a connection with the JWTBearer grant and signingKey Provided: " +
			"the self-signed X.509 certificate (PEM) snowauth makes for the key in the credentials Secret's private_key, " +
			"to upload to the instance's JWT verifier map. Only the PEM goes to stdout, exactly as status holds it, so " +
			"the output can be redirected to a file. snowauth makes the certificate at the first token request and a " +
			"new one 30 days before it expires (Warning Event CertificateRenewed). Managed keys have no certificate: " +
			"give the instance the JWKS URL that kubectl servicenow status shows. Needs get on the connection only.",
		Example: `  kubectl servicenow jwt-certificate orders > orders.pem
  kubectl servicenow jwt-certificate orders -n team-a | openssl x509 -noout -subject -enddate`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: s.completeNames(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, conn, err := s.connection(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			cert, err := jwtCertificate(conn)
			if err != nil {
				return err
			}
			_, err = io.WriteString(s.Out, cert)
			return err
		},
	}
	return cmd
}

// jwtCertificate is conn's certificate for its provided key, or why there
// is none to print.
func jwtCertificate(conn *snowv1.ServiceNowConnection) (string, error) {
	ns, name := conn.Namespace, conn.Name
	if conn.Spec.GrantType != snowv1.GrantJWTBearer {
		return "", fmt.Errorf("%s/%s uses the %s grant: only JWTBearer connections with signingKey Provided have a certificate",
			ns, name, conn.Spec.GrantType)
	}
	st := conn.Status.JWTBearer
	if signingKeyMode(conn) != snowv1.SigningKeyProvided {
		if st == nil || st.JWKSURL == "" {
			return "", fmt.Errorf("%s/%s uses managed signing keys (spec.jwtBearer.signingKey Managed), which have no certificate: "+
				"the instance's JWT verifier map takes the connection's JWKS URL, which snowauth has not published yet; see kubectl servicenow status %s",
				ns, name, name)
		}
		return "", fmt.Errorf("%s/%s uses managed signing keys (spec.jwtBearer.signingKey Managed), which have no certificate: "+
			"give the instance's JWT verifier map the JWKS URL %s", ns, name, Printable(st.JWKSURL))
	}
	if st == nil || st.Certificate == "" {
		return "", fmt.Errorf("%s/%s has no certificate yet: snowauth makes it at the first token request; see kubectl servicenow status %s",
			ns, name, name)
	}
	if err := checkCertificate(st.Certificate); err != nil {
		return "", fmt.Errorf("status.jwtBearer.certificate of %s/%s is not a certificate snowauth would make (%w): not printed", ns, name, err)
	}
	return st.Certificate, nil
}

// checkCertificate accepts what snowauth writes: one X.509 certificate,
// PEM-encoded as encoding/pem does, and nothing else. Printed as it is,
// it is then printable ASCII only.
func checkCertificate(certPEM string) error {
	block, _ := pem.Decode([]byte(certPEM))
	switch {
	case block == nil || block.Type != "CERTIFICATE":
		return errors.New("no PEM CERTIFICATE block")
	case string(pem.EncodeToMemory(block)) != certPEM:
		return errors.New("text besides one PEM CERTIFICATE block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("not X.509: %w", err)
	}
	return nil
}

// signingKeyMode is who holds a JWTBearer connection's key: Managed
// unless spec.jwtBearer.signingKey says Provided.
func signingKeyMode(conn *snowv1.ServiceNowConnection) snowv1.SigningKeyMode {
	if j := conn.Spec.JWTBearer; j != nil && j.SigningKey != "" {
		return j.SigningKey
	}
	return snowv1.SigningKeyManaged
}
