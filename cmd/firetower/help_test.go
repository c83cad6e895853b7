package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpListsEverySubcommand: every way of asking for help answers on
// stdout with exit status 0 and names each subcommand with its flags;
// nothing is started.
func TestHelpListsEverySubcommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 0 {
			t.Errorf("firetower %s: exit status %d, want 0 (stderr: %s)", strings.Join(args, " "), code, stderr.String())
		}
		out := stdout.String()
		for _, want := range []string{
			"firetower serve", "firetower manager", "firetower help",
			// serve's flags
			"-ws-addr", "-http-addr", "-node-id", "-manager", "-nats", "-legacy-delivery", "-allowed-origins",
			"-presence", "-wildcards", "-write-delay",
			// manager's own flag
			"  -addr string",
			// both
			"-cluster-secret", "-log-level",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("firetower %s: usage lacks %q:\n%s", strings.Join(args, " "), want, out)
			}
		}
		if strings.Contains(out, "listening") {
			t.Errorf("firetower %s started a server:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestSubcommandHelp: `firetower CMD --help` and `firetower help CMD`
// print that command's flags on stdout and exit 0.
func TestSubcommandHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string
		not  string // a flag of the other command
	}{
		// serve has --addr too (issue 14), and no flag of manager's own.
		{[]string{"serve", "--help"}, []string{"firetower serve", "-ws-addr", "-nats", "  -addr string", "-tls-cert", "-tls-key"}, ""},
		{[]string{"serve", "-h"}, []string{"firetower serve", "  -ws-addr string"}, ""},
		{[]string{"help", "serve"}, []string{"firetower serve", "  -ws-addr string"}, ""},
		{[]string{"manager", "--help"}, []string{"firetower manager", "  -addr string", "-http-addr"}, "  -ws-addr string"},
		{[]string{"manager", "-h"}, []string{"firetower manager", "  -addr string"}, "  -ws-addr string"},
		{[]string{"help", "manager"}, []string{"firetower manager", "  -addr string"}, "  -ws-addr string"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		name := "firetower " + strings.Join(c.args, " ")
		if code != 0 {
			t.Errorf("%s: exit status %d, want 0 (stderr: %s)", name, code, stderr.String())
		}
		out := stdout.String()
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, out)
			}
		}
		if c.not != "" && strings.Contains(out, c.not) {
			t.Errorf("%s: output shows %q, a flag of the other command:\n%s", name, c.not, out)
		}
	}
}

// TestBadUsageExits2: a mistake still goes to stderr with status 2, and
// says what was wrong.
func TestBadUsageExits2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuchcommand"}, "nosuchcommand"},
		{[]string{"serve", "--no-such-flag"}, "no-such-flag"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"manager", "--no-such-flag"}, "no-such-flag"},
		{[]string{"help", "nosuchcommand"}, "nosuchcommand"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		name := "firetower " + strings.Join(c.args, " ")
		if code != 2 {
			t.Errorf("%s: exit status %d, want 2", name, code)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: stderr does not name %q:\n%s", name, c.want, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%s: wrote to stdout:\n%s", name, stdout.String())
		}
	}
}

// TestHelpHidesSecretsFromEnvironment: keys taken from the environment
// never show as flag defaults in --help.
func TestHelpHidesSecretsFromEnvironment(t *testing.T) {
	t.Setenv("FIRETOWER_API_KEY", "env-key-do-not-print")
	t.Setenv("FIRETOWER_CLUSTER_SECRET", "env-secret-do-not-print")
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"manager", "--help"}} {
		var stdout, stderr bytes.Buffer
		run(context.Background(), args, &stdout, &stderr)
		if out := stdout.String() + stderr.String(); strings.Contains(out, "do-not-print") {
			t.Errorf("firetower %s shows a secret from the environment:\n%s", strings.Join(args, " "), out)
		}
	}
}
