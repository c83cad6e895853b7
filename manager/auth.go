package manager

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Cluster authentication.
//
// With a shared secret, a session opens with a challenge in each direction,
// and the secret itself never crosses the wire:
//
//	gateway -> manager  HELLO     Node, Text = boot id, Data = gateway nonce (32 random bytes)
//	manager -> gateway  CHALLENGE Data = manager nonce (32 random bytes) + manager proof
//	gateway -> manager  AUTH      Data = gateway proof; then SYNC as usual
//	manager -> gateway  WELCOME
//
// A proof is HMAC-SHA256(secret, label, gateway nonce, manager nonce, node
// id, boot id), with a different label for each side, so neither proof can
// be replayed on another connection (both nonces are fresh) nor reflected
// back to its sender. The manager applies nothing a peer sends before its
// AUTH checks out, and refuses a peer without a nonce or with a wrong proof
// with a GOAWAY; the gateway sends no interest and accepts no traffic from
// a manager that cannot prove the secret either.
//
// The secret authenticates the two ends when a session opens; it does not
// encrypt or protect the session after that. Across a network that others
// can tap or tamper with, add TLS (ServerConfig.TLS, ClientConfig.TLS).

const nonceLen = 32

const (
	labelGateway = "firetower cluster v1 gateway proof\x00"
	labelManager = "firetower cluster v1 manager proof\x00"
)

func newNonce() []byte {
	b := make([]byte, nonceLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// proof is one side's answer to the challenge.
func proof(secret []byte, label string, gatewayNonce, managerNonce []byte, node uint16, boot string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(gatewayNonce)
	m.Write(managerNonce)
	m.Write(binary.BigEndian.AppendUint16(nil, node))
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(boot)))) //nolint:gosec // G115: boot is a base-36 uint64, at most 13 bytes
	m.Write([]byte(boot))
	return m.Sum(nil)
}

// proofLen is the size of a proof (SHA-256).
const proofLen = sha256.Size

// ErrInsecureAddr is returned by NewServer and NewClient for a non-loopback
// address with no Secret (and no mutual TLS), unless AllowInsecure is set.
var ErrInsecureAddr = errors.New("manager: a cluster address that is not loopback needs a cluster secret")

// IsLoopback reports whether the host of addr (host:port) is a loopback
// address or "localhost". An empty host (":6666") listens on every
// interface and is not loopback; other names are not resolved and count as
// not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// insecureAddrs returns an error naming the addresses that are not loopback.
func insecureAddrs(addrs ...string) error {
	var open []string
	for _, a := range addrs {
		if !IsLoopback(a) {
			open = append(open, a)
		}
	}
	if len(open) == 0 {
		return nil
	}
	return fmt.Errorf("%w (%s): set Secret (or require mutual TLS), or AllowInsecure to accept any peer that can connect", ErrInsecureAddr, strings.Join(open, ", "))
}

// clientTLSFor returns the TLS configuration to dial addr with: a copy of
// base whose ServerName is addr's host when base leaves it empty.
func clientTLSFor(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}
