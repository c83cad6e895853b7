package middleware_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

// These unit tests run the middleware on a zero Context; the hook tests of
// the root package run them inside a live Tower.

func TestRecoverTurnsPanicIntoInternalError(t *testing.T) {
	h := middleware.Recover(func(*firetower.Context) error { panic("boom") })
	err := h(&firetower.Context{})
	var fe *firetower.Error
	if !errors.As(err, &fe) || fe.Code != firetower.CodeInternal {
		t.Fatalf("got %v, want an *Error with code internal", err)
	}
	if strings.Contains(fe.Message, "boom") {
		t.Fatalf("client message %q leaks the panic value", fe.Message)
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %q does not keep the panic value for logs", err)
	}
}

func TestRecoverPassesThrough(t *testing.T) {
	want := errors.New("refused")
	if err := middleware.Recover(func(*firetower.Context) error { return want })(&firetower.Context{}); err != want {
		t.Fatalf("got %v, want %v", err, want)
	}
}

func TestLoggerLogsErrorsAtWarn(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := middleware.Logger(l)(func(*firetower.Context) error { return errors.New("nope") })
	if err := h(&firetower.Context{}); err == nil || err.Error() != "nope" {
		t.Fatalf("error not passed through: %v", err)
	}
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "err=nope") {
		t.Fatalf("log output %q lacks the warn line", out)
	}
	buf.Reset()
	if err := middleware.Logger(l)(func(*firetower.Context) error { return nil })(&firetower.Context{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Fatalf("log output %q lacks the debug line", buf.String())
	}
}
