// Command servicenow-simulator serves a simulated ServiceNow instance over
// HTTPS, for demos, benchmarks and manual testing of snowauth. It registers
// one OAuth client and, optionally, one user, writes its CA certificate to a
// file so clients can trust it, prints its URL and runs until SIGINT or
// SIGTERM. See package internal/servicenow/simulator for what it reproduces.
//
// Secrets come from flags or, better (flags show up in ps), from the
// environment: SIMULATOR_CLIENT_SECRET and SIMULATOR_PASSWORD.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "servicenow-simulator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		opts              simulator.Options
		client            simulator.OAuthClient
		user              simulator.User
		caFile, certHosts string
		quiet             bool
	)
	flag.StringVar(&opts.Addr, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	flag.StringVar(&certHosts, "cert-hosts", "localhost,127.0.0.1", "comma-separated names and IPs the certificate is valid for")
	flag.DurationVar(&opts.AccessTokenLifespan, "access-token-lifespan", simulator.DefaultAccessTokenLifespan, "access token lifespan")
	flag.DurationVar(&opts.RefreshTokenLifespan, "refresh-token-lifespan", simulator.DefaultRefreshTokenLifespan, "refresh token lifespan")
	flag.StringVar(&client.ID, "client-id", env("SIMULATOR_CLIENT_ID", "snowauth"), "OAuth client ID to register (env SIMULATOR_CLIENT_ID)")
	flag.StringVar(&client.Secret, "client-secret", os.Getenv("SIMULATOR_CLIENT_SECRET"), "OAuth client secret (env SIMULATOR_CLIENT_SECRET)")
	flag.StringVar(&user.Username, "username", os.Getenv("SIMULATOR_USERNAME"), "user to register for the password grant (env SIMULATOR_USERNAME)")
	flag.StringVar(&user.Password, "password", os.Getenv("SIMULATOR_PASSWORD"), "that user's password (env SIMULATOR_PASSWORD)")
	flag.BoolVar(&opts.ClientCredentialsEnabled, "client-credentials", false,
		"enable the client_credentials grant, acting as -username (the OAuth application user)")
	flag.StringVar(&caFile, "ca-file", "", "write the CA certificate (PEM) to this file")
	flag.BoolVar(&quiet, "quiet", false, "do not log requests")
	flag.Parse()

	if client.Secret == "" {
		return errors.New("a client secret is required (-client-secret or SIMULATOR_CLIENT_SECRET)")
	}
	if (user.Username == "") != (user.Password == "") {
		return errors.New("-username and -password go together")
	}
	if opts.ClientCredentialsEnabled && user.Username == "" {
		return errors.New("-client-credentials needs -username for the application user")
	}
	opts.CertificateHosts = strings.Split(certHosts, ",")
	if !quiet {
		opts.Logf = log.Printf
	}

	s, err := simulator.Start(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if user.Username != "" {
		s.AddUser(user)
		client.ApplicationUser = user.Username
	}
	s.AddClient(client)
	if caFile != "" {
		if err := os.WriteFile(caFile, s.CACertPEM(), 0o644); err != nil {
			return err
		}
	}
	fmt.Println(s.URL())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
