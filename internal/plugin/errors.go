package plugin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// The plugin's exit codes. cmd/kubectl-servicenow exits with ExitCode of
// the command's error; the root command's help lists them.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: an error, such as an API error, a connection that does
	// not exist, RBAC forbidding the request or a refused request.
	ExitFailure = 1
	// ExitUsage: the command line is wrong: an unknown command or flag, a
	// missing or extra argument, flags that do not go together, an unknown
	// output format.
	ExitUsage = 2
	// ExitNotReady: after --wait, a connection is not refreshed and Ready:
	// the timeout passed, the refresh failed, or it is stalled.
	ExitNotReady = 3
)

// exitCodesHelp is the exit code table as the root command's help prints it.
const exitCodesHelp = `Exit codes:
  0  success
  1  error: an API error, a connection not found, forbidden by RBAC, a refused request
  2  usage error: an unknown command or flag, a missing argument, an unknown output format
  3  not Ready after --wait: the timeout passed, the refresh failed, or the connection is stalled`

// ExitError is an error with the exit code it stands for.
type ExitError struct {
	// Code is the process exit code, one of the Exit constants.
	Code int
	// Err is what went wrong; ExitError prints as Err.
	Err error
}

func (e *ExitError) Error() string { return e.Err.Error() }

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the exit code for err, the error a command returned: ExitOK
// for nil, the code of the first ExitError it wraps, else ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if e, ok := errors.AsType[*ExitError](err); ok {
		return e.Code
	}
	return ExitFailure
}

// usageError is a usage mistake in cmd's command line. Like kubectl's, its
// message ends with where to read the usage.
func usageError(cmd *cobra.Command, format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s\nSee '%s --help' for help and examples",
		fmt.Sprintf(format, args...), cmd.CommandPath())}
}

// notReady marks err as a connection that did not become refreshed and
// Ready while waiting.
func notReady(err error) error {
	return &ExitError{Code: ExitNotReady, Err: err}
}

// usageArgs makes a cobra argument check's error a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(cmd, "%s", err.Error())
		}
		return nil
	}
}

// noArgs refuses arguments, as a usage error that names the command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(cmd, "%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// flagError makes a flag parsing error a usage error.
func flagError(cmd *cobra.Command, err error) error {
	return usageError(cmd, "%s", err.Error())
}

// unknownCommand is the root command's argument check: cobra's own check
// of the root's arguments cannot carry an exit code.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return usageError(cmd, "%s", msg)
}

// joinErrors is the error of a command that acted on several connections:
// nil when all went well, the one error when one failed, else all of them,
// one a line, with ExitFailure if any failed for another reason than not
// becoming Ready, else ExitNotReady.
func joinErrors(total int, errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	code := ExitNotReady
	lines := make([]string, 0, len(errs))
	for _, err := range errs {
		if ExitCode(err) != ExitNotReady {
			code = ExitFailure
		}
		lines = append(lines, "  "+strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return &ExitError{Code: code, Err: fmt.Errorf("%d of %d connections failed:\n%s",
		len(errs), total, strings.Join(lines, "\n"))}
}
