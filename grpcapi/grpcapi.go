// Package grpcapi is firetower's gRPC push API: the operations of the HTTP
// push API (package httpapi) as the firetower.v1.PushService of
// firetower.proto, for backends that speak gRPC.
//
//	s := grpcapi.New(tower, grpcapi.Config{APIKey: key})
//	g := s.NewGRPCServer()      // the service behind its API-key interceptor
//	go g.Serve(listener)
//	...
//	g.GracefulStop()
//
// With an API key, every call carries it as metadata, "authorization:
// Bearer <key>" or "x-api-key: <key>". Errors are gRPC statuses with a
// google.rpc.ErrorInfo detail (domain "firetower") whose reason is the HTTP
// API's error code; ErrorCode reads it back.
package grpcapi

//go:generate protoc --go_out=.. --go_opt=module=github.com/firetower-go/firetower --go-grpc_out=.. --go-grpc_opt=module=github.com/firetower-go/firetower firetower.proto

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/grpcapi/firetowerpb"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/internal/protocol"
)

// ErrorDomain is the domain of the ErrorInfo detail of every error status.
const ErrorDomain = "firetower"

// Config configures the service.
type Config struct {
	// APIKey, when set, is required on every call as metadata
	// "authorization: Bearer <key>" or "x-api-key: <key>".
	APIKey string
	// MaxBatch bounds the publishes of one call: every topic of every
	// message of a PublishBatch counts, as do the topics of a Publish.
	// Default 1000.
	MaxBatch int
	// Timeout bounds one call's work (a shorter client deadline wins).
	// Default 10s.
	Timeout time.Duration
	// MaxMessageSize is the largest request NewGRPCServer accepts, in bytes;
	// a larger one fails with RESOURCE_EXHAUSTED. Default 1 MiB, the HTTP
	// API's body limit.
	MaxMessageSize int
	// Guard, when set, limits wrong keys per client address (see
	// httpapi.Guard.Attempt): past its burst a client gets
	// RESOURCE_EXHAUSTED (reason "too_many_attempts") whatever key it
	// sends. Share the HTTP API's Guard to count a client's failures
	// once. The key compared stays APIKey.
	Guard *httpapi.Guard
}

// Server implements firetowerpb.PushServiceServer for a Tower.
type Server struct {
	firetowerpb.UnimplementedPushServiceServer
	t   *firetower.Tower
	cfg Config
}

var _ firetowerpb.PushServiceServer = (*Server)(nil)

// New returns the push service for t.
func New(t *firetower.Tower, cfg Config) *Server {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	return &Server{t: t, cfg: cfg}
}

// NewGRPCServer returns a gRPC server with the service registered and its
// API-key interceptor installed (before any interceptor given in opts), and
// a request size limit of Config.MaxMessageSize (opts may override it).
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	all := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxMessageSize),
		grpc.ChainUnaryInterceptor(s.UnaryInterceptor()),
	}, opts...)
	g := grpc.NewServer(all...)
	s.Register(g)
	return g
}

// Register registers the service on r. It is safe on a server built
// without UnaryInterceptor: the methods then check the API key themselves.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	firetowerpb.RegisterPushServiceServer(r, s)
}

type authorizedKey struct{}

// UnaryInterceptor checks the API key of calls to the push service (calls
// to other services on the same server pass through untouched).
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	prefix := "/" + firetowerpb.PushService_ServiceDesc.ServiceName + "/"
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if s.cfg.APIKey == "" || !strings.HasPrefix(info.FullMethod, prefix) {
			return handler(ctx, req)
		}
		if err := s.checkKey(ctx); err != nil {
			return nil, err
		}
		return handler(context.WithValue(ctx, authorizedKey{}, s), req)
	}
}

// authorize is the methods' own check, for a server without the interceptor.
func (s *Server) authorize(ctx context.Context) error {
	if s.cfg.APIKey == "" || ctx.Value(authorizedKey{}) == s {
		return nil
	}
	return s.checkKey(ctx)
}

func (s *Server) checkKey(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get("x-api-key"); len(v) > 0 {
		got = v[0]
	} else if v := md.Get("authorization"); len(v) > 0 {
		if scheme, token, ok := strings.Cut(v[0], " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimLeft(token, " ")
		}
	}
	match := func() bool { return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) == 1 }
	if s.cfg.Guard != nil && got != "" {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			addr = p.Addr.String()
		}
		ok, wait := s.cfg.Guard.Attempt(addr, "grpc", match)
		if wait > 0 {
			return statusError(codes.ResourceExhausted, "too_many_attempts",
				fmt.Sprintf("too many wrong API keys from this address: try again in %s", wait.Round(time.Second)))
		}
		if !ok {
			return statusError(codes.Unauthenticated, "unauthorized", "missing or wrong API key")
		}
		return nil
	}
	if !match() {
		return statusError(codes.Unauthenticated, "unauthorized", "missing or wrong API key")
	}
	return nil
}

func (s *Server) start(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	return ctx, cancel, nil
}

// message checks one publish and returns its topics and data; nothing is
// published until every message of a call has passed.
func message(m *firetowerpb.PublishRequest) ([]string, []byte, error) {
	topics := append([]string(nil), m.GetTopics()...)
	if m.GetTopic() != "" {
		topics = append(topics, m.GetTopic())
	}
	if len(topics) == 0 {
		return nil, nil, statusError(codes.InvalidArgument, firetower.CodeInvalidTopic, "no topic given")
	}
	for _, t := range topics {
		if err := protocol.ValidateTopic(t); err != nil {
			return nil, nil, statusError(codes.InvalidArgument, firetower.CodeInvalidTopic, err.Error())
		}
		if firetower.IsSystemTopic(t) {
			return nil, nil, statusError(codes.PermissionDenied, firetower.CodeForbidden,
				fmt.Sprintf("topic %q: topics starting with %s are reserved for the server", t, firetower.SystemTopicPrefix))
		}
	}
	data := m.GetData()
	if len(data) == 0 {
		data = []byte("null")
	} else if !json.Valid(data) {
		return nil, nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "data is not one valid JSON value")
	}
	return topics, data, nil
}

// Publish implements firetowerpb.PushServiceServer.
func (s *Server) Publish(ctx context.Context, req *firetowerpb.PublishRequest) (*firetowerpb.PublishResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	topics, data, err := message(req)
	if err != nil {
		return nil, err
	}
	if len(topics) > s.cfg.MaxBatch {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, fmt.Sprintf("a publish names at most %d topics", s.cfg.MaxBatch))
	}
	resp := &firetowerpb.PublishResponse{Topics: topics}
	for _, t := range topics {
		p, err := s.t.PublishOffset(ctx, t, data)
		if err != nil {
			return nil, toStatus(err)
		}
		if p.Epoch != "" { // a topic with history
			resp.Positions = append(resp.Positions, &firetowerpb.TopicPosition{Topic: t, Offset: p.Offset, Epoch: p.Epoch})
		}
	}
	return resp, nil
}

// History implements firetowerpb.PushServiceServer.
func (s *Server) History(ctx context.Context, req *firetowerpb.HistoryRequest) (*firetowerpb.HistoryResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if req.GetLimit() < 0 {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "limit must be >= 0")
	}
	var since *firetower.Position
	if sp := req.GetSince(); sp != nil {
		since = &firetower.Position{Offset: sp.GetOffset(), Epoch: sp.GetEpoch()}
	}
	r, err := s.t.History(ctx, req.GetTopic(), since, int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &firetowerpb.HistoryResponse{Topic: r.Topic, Epoch: r.Top.Epoch, Offset: r.Top.Offset, Recovered: r.Recovered}
	if resp.Topic == "" {
		resp.Topic = req.GetTopic()
	}
	resp.Publications = make([]*firetowerpb.Publication, len(r.Publications))
	for i, p := range r.Publications {
		resp.Publications[i] = &firetowerpb.Publication{Offset: p.Offset, Data: p.Data}
	}
	return resp, nil
}

// PublishBatch implements firetowerpb.PushServiceServer.
func (s *Server) PublishBatch(ctx context.Context, req *firetowerpb.PublishBatchRequest) (*firetowerpb.PublishBatchResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	msgs := req.GetMessages()
	if len(msgs) == 0 || len(msgs) > s.cfg.MaxBatch {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, fmt.Sprintf("a batch holds 1 to %d messages", s.cfg.MaxBatch))
	}
	// Every topic of every message is one publish: all count toward
	// MaxBatch.
	total := 0
	for _, m := range msgs {
		total += len(m.GetTopics())
		if m.GetTopic() != "" {
			total++
		}
	}
	if total > s.cfg.MaxBatch {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, fmt.Sprintf("a batch makes at most %d publishes (one per topic of each message); this one makes %d", s.cfg.MaxBatch, total))
	}
	type checked struct {
		topics []string
		data   []byte
	}
	all := make([]checked, len(msgs))
	for i, m := range msgs {
		topics, data, err := message(m)
		if err != nil {
			st := status.Convert(err)
			return nil, statusError(st.Code(), ErrorCode(err), fmt.Sprintf("message %d: %s", i, st.Message()))
		}
		all[i] = checked{topics, data}
	}
	var n int64
	for i, m := range all {
		for _, t := range m.topics {
			if err := s.t.Publish(ctx, t, m.data); err != nil {
				st := status.Convert(toStatus(err))
				return nil, statusError(st.Code(), ErrorCode(st.Err()), fmt.Sprintf("message %d (%d published before it): %s", i, n, st.Message()))
			}
			n++
		}
	}
	return &firetowerpb.PublishBatchResponse{Published: n}, nil
}

// Count implements firetowerpb.PushServiceServer.
func (s *Server) Count(ctx context.Context, req *firetowerpb.CountRequest) (*firetowerpb.CountResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	n, err := s.t.ConnectNum(ctx, req.GetTopic())
	if err != nil {
		return nil, toStatus(err)
	}
	return &firetowerpb.CountResponse{Topic: req.GetTopic(), Count: n}, nil
}

// ListTopics implements firetowerpb.PushServiceServer.
func (s *Server) ListTopics(ctx context.Context, req *firetowerpb.ListTopicsRequest) (*firetowerpb.ListTopicsResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if req.GetTop() < 0 {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "top must be >= 0")
	}
	all, err := s.t.ClusterTopics(ctx, req.GetQuery(), int(req.GetTop()))
	if err != nil {
		return nil, toStatus(err)
	}
	local := s.t.Topics()
	rows := make([]*firetowerpb.TopicCount, 0, len(all))
	for _, tc := range all {
		rows = append(rows, &firetowerpb.TopicCount{Topic: tc.Topic, Local: local[tc.Topic], Count: tc.Count})
	}
	return &firetowerpb.ListTopicsResponse{Topics: rows}, nil
}

// Presence implements firetowerpb.PushServiceServer.
func (s *Server) Presence(ctx context.Context, req *firetowerpb.PresenceRequest) (*firetowerpb.PresenceResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if req.GetLimit() < 0 {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "limit must be >= 0")
	}
	conns, err := s.t.Presence(ctx, req.GetTopic(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	out := make([]*firetowerpb.ConnInfo, len(conns))
	for i, c := range conns {
		out[i] = &firetowerpb.ConnInfo{Id: c.ID, UserId: c.UserID, Node: uint32(c.Node)}
	}
	st, err := s.t.PresenceStats(ctx, req.GetTopic())
	if err != nil {
		return nil, toStatus(err)
	}
	return &firetowerpb.PresenceResponse{Topic: req.GetTopic(), Connections: out, Count: st.Connections, Users: st.Users}, nil
}

// Disconnect implements firetowerpb.PushServiceServer.
func (s *Server) Disconnect(ctx context.Context, req *firetowerpb.DisconnectRequest) (*firetowerpb.DisconnectResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	code := int(req.GetCode())
	if code == 0 {
		code = 1000
	}
	switch {
	case (req.GetConnId() == "") == (req.GetUserId() == ""):
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "give exactly one of conn_id and user_id")
	case req.GetConnId() != "":
		if err := s.t.Disconnect(ctx, req.GetConnId(), code, req.GetReason()); err != nil {
			return nil, toStatus(err)
		}
		return &firetowerpb.DisconnectResponse{Disconnected: 1}, nil
	default:
		n, err := s.t.DisconnectUser(ctx, req.GetUserId(), code, req.GetReason())
		if err != nil {
			return nil, toStatus(err)
		}
		return &firetowerpb.DisconnectResponse{Disconnected: int64(n)}, nil
	}
}

// Unsubscribe implements firetowerpb.PushServiceServer.
func (s *Server) Unsubscribe(ctx context.Context, req *firetowerpb.UnsubscribeRequest) (*firetowerpb.UnsubscribeResponse, error) {
	ctx, cancel, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	topics := append([]string(nil), req.GetTopics()...)
	if req.GetTopic() != "" {
		topics = append(topics, req.GetTopic())
	}
	if req.GetConnId() == "" || len(topics) == 0 {
		return nil, statusError(codes.InvalidArgument, firetower.CodeBadRequest, "conn_id and topic(s) are required")
	}
	if err := s.t.Unsubscribe(ctx, req.GetConnId(), topics...); err != nil {
		return nil, toStatus(err)
	}
	return &firetowerpb.UnsubscribeResponse{Topics: topics}, nil
}

// toStatus maps a firetower error to a gRPC status error.
func toStatus(err error) error {
	var fe *firetower.Error
	switch {
	case errors.As(err, &fe):
		return statusError(grpcCode(fe.Code), fe.Code, fe.Message)
	case errors.Is(err, firetower.ErrClosed), errors.Is(err, firetower.ErrNotStarted):
		return statusError(codes.Unavailable, firetower.CodeUnavailable, "server is not running")
	case errors.Is(err, firetower.ErrBadOption):
		return statusError(codes.InvalidArgument, firetower.CodeBadRequest, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return statusError(codes.DeadlineExceeded, firetower.CodeUnavailable, "timed out")
	case errors.Is(err, context.Canceled):
		return statusError(codes.Canceled, firetower.CodeUnavailable, "canceled")
	}
	return statusError(codes.Internal, firetower.CodeInternal, err.Error())
}

// grpcCode is the gRPC code for a firetower error code.
func grpcCode(code string) codes.Code {
	switch code {
	case firetower.CodeInvalidTopic, firetower.CodeBadRequest, firetower.CodeUnknownType, firetower.CodeTooManyTopics:
		return codes.InvalidArgument
	case "not_found":
		return codes.NotFound
	case firetower.CodeUnavailable:
		return codes.Unavailable
	case "unauthorized":
		return codes.Unauthenticated
	case firetower.CodeForbidden:
		return codes.PermissionDenied
	case firetower.CodeMessageTooLarge, firetower.CodeRateLimited:
		return codes.ResourceExhausted
	case firetower.CodeInternal:
		return codes.Internal
	}
	return codes.Unknown
}

func statusError(c codes.Code, reason, msg string) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// ErrorCode returns the firetower error code ("invalid_topic",
// "not_found", ...) carried by an error from this service, or "" when err
// carries none (nil, or an error from gRPC itself).
func ErrorCode(err error) string {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}
