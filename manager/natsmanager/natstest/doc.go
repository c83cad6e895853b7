// Package natstest tests package natsmanager against embedded NATS
// servers. It is a module of its own so that nats-server, which the tests
// need, stays out of the dependency graph of firetower's users:
//
//	cd manager/natsmanager/natstest && go test -race ./...
package natstest
