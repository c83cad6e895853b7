package firetower

import (
	"errors"

	"github.com/firetower-go/firetower/internal/protocol"
)

// Error is an error with a protocol error code, sent to the client as an
// error message. Hooks return one to choose the code the client sees.
type Error struct {
	Code    string // one of the Code* constants, or an application code
	Message string // for humans
}

func (e *Error) Error() string { return "firetower: " + e.Code + ": " + e.Message }

// Is makes errors.Is match two *Error values by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Error codes of the client protocol.
const (
	CodeBadRequest      = protocol.CodeBadRequest
	CodeUnknownType     = protocol.CodeUnknownType
	CodeInvalidTopic    = protocol.CodeInvalidTopic
	CodeForbidden       = protocol.CodeForbidden
	CodeTooManyTopics   = protocol.CodeTooManyTopics
	CodeRateLimited     = protocol.CodeRateLimited
	CodeMessageTooLarge = protocol.CodeMessageTooLarge
	CodeUnavailable     = protocol.CodeUnavailable
	CodeInternal        = protocol.CodeInternal
)

// Sentinel errors.
var (
	ErrClosed       = errors.New("firetower: closed")
	ErrNotStarted   = errors.New("firetower: not started")
	ErrStarted      = errors.New("firetower: already started")
	ErrBadOption    = errors.New("firetower: bad option")
	ErrUnauthorized = &Error{Code: "unauthorized", Message: "authentication required"}
	ErrForbidden    = &Error{Code: CodeForbidden, Message: "forbidden"}
	ErrInvalidTopic = &Error{Code: CodeInvalidTopic, Message: "invalid topic"}
	ErrUnavailable  = &Error{Code: CodeUnavailable, Message: "the cluster could not take the message"}
)

// asError maps any error to the *Error the client sees; def is the code for
// errors that are not *Error.
func asError(err error, def string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: def, Message: err.Error()}
}

// ValidateTopic checks a topic against the protocol's rules (1 to 256 bytes
// of printable UTF-8, no comma, no white space); the error is an *Error
// with code invalid_topic.
func ValidateTopic(topic string) error {
	if err := protocol.ValidateTopic(topic); err != nil {
		return &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	return nil
}
