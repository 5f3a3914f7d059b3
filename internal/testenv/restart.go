package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// RestartAPIServer stops the API server (SIGTERM, as the kubelet does), runs
// whileDown (nil: nothing) once it is gone, and starts it again on the same
// etcd, address and certificates, so that clients built from Config
// (managers, the test's Client) reconnect to it as they would to a
// restarted control plane. Everything stored survives; the API server's
// watch cache does not. The API server refuses connections from the moment
// it is signalled, for up to half a minute when it has watches to drain.
//
// It restarts this Env's API server for everyone using it: give a test
// that restarts it an Env of its own (Start). It is not safe for
// concurrent use.
func (e *Env) RestartAPIServer(whileDown func()) error {
	apiServer := e.env.ControlPlane.GetAPIServer()
	// envtest removes a certificate folder it created when the API server
	// stops, and would make a new CA on the next start, which clients
	// holding Config's CA would refuse. Keep a copy (removed by Stop) and
	// start from it.
	certs, err := os.MkdirTemp("", "snowauth-apiserver-certs-")
	if err != nil {
		return err
	}
	e.removeOnStop = append(e.removeOnStop, certs)
	entries, err := os.ReadDir(apiServer.CertDir)
	if err != nil {
		return fmt.Errorf("reading the API server's certificates: %w", err)
	}
	for _, entry := range entries {
		if !entry.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(apiServer.CertDir, entry.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(certs, entry.Name()), b, 0o600); err != nil {
			return err
		}
	}
	// kube-apiserver stops listening at once on SIGTERM but drains open
	// watches before it exits; envtest kills it when that takes longer
	// than its stop timeout (20 s) and reports the timeout. Stopped
	// either way once its port is free.
	stopErr := apiServer.Stop()
	addr := net.JoinHostPort(apiServer.Address, apiServer.Port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
		if err == nil {
			_ = l.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stopping the API server: %w", errors.Join(stopErr, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if whileDown != nil {
		whileDown()
	}
	apiServer.CertDir = certs
	if err := apiServer.Start(); err != nil {
		return fmt.Errorf("starting the API server again: %w", err)
	}
	return nil
}
