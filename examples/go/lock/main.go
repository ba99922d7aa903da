// Command lock: four clients add to a shared counter under a named Spindle lock; the count is
// exact.
//
// Each client has its own connection and session (kept alive by a KeepAlive stream) and, 10
// times, acquires the lock (LockService.Acquire, FIFO), reads the counter (ValueService.GetValue),
// writes it back plus one (SetValue) and releases the lock. Fencing tokens only grow.
//
//	examples/go/run.sh lock [-address HOST:PORT]
//
// Last line: "go lock: 4 clients x 10 increments = 40 (exact)".
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	spindlev1 "spindle/v1"
)

const (
	clients    = 4
	increments = 10
)

func defaultAddress() string {
	if a := os.Getenv("SPINDLE_ADDRESS"); a != "" {
		return a
	}
	return "127.0.0.1:50051"
}

// session opens a session and keeps it alive with KeepAlive pings every ttl/3 until ctx ends.
func session(ctx context.Context, conn *grpc.ClientConn, ttl time.Duration) (string, error) {
	sessions := spindlev1.NewSessionServiceClient(conn)
	created, err := sessions.CreateSession(ctx, &spindlev1.CreateSessionRequest{TtlMs: ttl.Milliseconds(), ClientName: "go/lock"})
	if err != nil {
		return "", err
	}
	id := created.GetSession().GetSessionId()
	stream, err := sessions.KeepAlive(ctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(&spindlev1.KeepAliveRequest{SessionId: id, CloseOnDisconnect: true}); err != nil {
		return "", err
	}
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	go func() {
		ticker := time.NewTicker(ttl / 3)
		defer ticker.Stop()
		for ping := uint64(1); ; ping++ {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				if stream.Send(&spindlev1.KeepAliveRequest{PingId: ping}) != nil {
					return
				}
			}
		}
	}()
	return id, nil
}

func worker(ctx context.Context, address, lockName, counter string, id int) error {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sessionID, err := session(ctx, conn, 10*time.Second)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	locks := spindlev1.NewLockServiceClient(conn)
	values := spindlev1.NewValueServiceClient(conn)
	var lastToken int64
	for i := 0; i < increments; i++ {
		acquired, err := locks.Acquire(ctx, &spindlev1.AcquireRequest{
			Name: lockName, SessionId: sessionID, Owner: fmt.Sprintf("worker-%d", id), Wait: true, MaxWaitMs: 20000,
		})
		if err != nil {
			return fmt.Errorf("acquire: %w", err)
		}
		if !acquired.GetAcquired() {
			return fmt.Errorf("lock %s not acquired in 20 s", lockName)
		}
		grant := acquired.GetGrant()
		if grant.GetFencingToken() <= lastToken {
			return fmt.Errorf("fencing token went back: %d after %d", grant.GetFencingToken(), lastToken)
		}
		lastToken = grant.GetFencingToken()
		got, err := values.GetValue(ctx, &spindlev1.GetValueRequest{Name: counter})
		if err == nil {
			time.Sleep(time.Duration(rand.Intn(2)) * time.Millisecond) // Work between read and write.
			_, err = values.SetValue(ctx, &spindlev1.SetValueRequest{Name: counter, Data: &spindlev1.ValueData{
				Kind: &spindlev1.ValueData_Int64Value{Int64Value: got.GetEntry().GetData().GetInt64Value() + 1},
			}})
		}
		if _, rerr := locks.Release(ctx, &spindlev1.ReleaseRequest{LeaseId: grant.GetLeaseId()}); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	_, err = spindlev1.NewSessionServiceClient(conn).CloseSession(ctx, &spindlev1.CloseSessionRequest{SessionId: sessionID})
	return err
}

func main() {
	address := flag.String("address", defaultAddress(), "spindled host:port (default $SPINDLE_ADDRESS or 127.0.0.1:50051)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1000000)
	lockName, counter := "examples/go-lock/"+suffix, "examples/go-counter/"+suffix

	conn, err := grpc.Dial(*address, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	values := spindlev1.NewValueServiceClient(conn)
	if _, err := values.SetValue(ctx, &spindlev1.SetValueRequest{Name: counter, Data: &spindlev1.ValueData{
		Kind: &spindlev1.ValueData_Int64Value{Int64Value: 0}}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			if err := worker(ctx, *address, lockName, counter, id); err != nil {
				errs <- fmt.Errorf("worker %d: %w", id, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	failed := false
	for err := range errs {
		fmt.Fprintln(os.Stderr, err)
		failed = true
	}
	got, err := values.GetValue(ctx, &spindlev1.GetValueRequest{Name: counter})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	values.DeleteValue(ctx, &spindlev1.DeleteValueRequest{Name: counter})
	spindlev1.NewLockServiceClient(conn).DeleteLock(ctx, &spindlev1.DeleteLockRequest{Name: lockName})
	total := got.GetEntry().GetData().GetInt64Value()
	verdict := "exact"
	if total != clients*increments || failed {
		verdict = "WRONG"
	}
	fmt.Printf("go lock: %d clients x %d increments = %d (%s)\n", clients, increments, total, verdict)
	if verdict != "exact" {
		os.Exit(1)
	}
}
