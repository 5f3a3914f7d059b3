package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud providers' kubeconfig auth, as kubectl has

	"github.com/snowauth/snowauth/internal/plugin"
)

func main() {
	os.Exit(run())
}

// run is main without os.Exit, so the signal handler's cleanup runs.
// Ctrl-C cancels a `refresh --wait` cleanly.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := plugin.NewCommand(plugin.Options{
		IOStreams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	})
	if err := cmd.ExecuteContext(ctx); err != nil {
		// cobra has printed the error.
		return 1
	}
	return 0
}
