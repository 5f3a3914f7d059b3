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

// run is main without os.Exit, so its deferred work (the signal handler's
// cleanup) is done before the process exits. Ctrl-C cancels a
// `refresh --wait` cleanly. The exit code is the error's (plugin.ExitCode):
// 0 ok, 1 error, 2 usage error, 3 not Ready after --wait.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := plugin.NewCommand(plugin.Options{
		IOStreams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	})
	// cobra has printed the error, if any.
	return plugin.ExitCode(cmd.ExecuteContext(ctx))
}
