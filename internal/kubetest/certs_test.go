package kubetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"
)

func TestPKIServesLoopbackAndAuthenticatesTheAdmin(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("the CA PEM holds no certificate")
	}
	serverPEM, err := os.ReadFile(p.serverCert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(serverPEM, keyPEM); err != nil {
		t.Fatalf("serving certificate and key: %v", err)
	}
	server := parse(t, serverPEM)
	for _, host := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc", serviceIP} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}

	if _, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM); err != nil {
		t.Fatalf("admin certificate and key: %v", err)
	}
	admin := parse(t, p.adminCertPEM)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate as a client's: %v", err)
	}
	if admin.Subject.CommonName != adminUser || !slices.Equal(admin.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin certificate subject %v; want CN=%s O=system:masters", admin.Subject, adminUser)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the admin certificate verifies as a server's")
	}
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
