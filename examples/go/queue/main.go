// Command queue: a producer and two consumers share a Spindle queue; every item is received and
// acked exactly once.
//
// The producer puts 50 items in batches of 10 (QueueService.PutItems). Two consumers LEASE items
// (GetItems, mode LEASE, waiting up to 1 s per call) and acknowledge them (AckItems) after
// handling them; an unacked item would go back to the queue when its lease ends. When the
// producer is done it closes the queue; the consumers drain it and stop at OUT_OF_RANGE (reason
// QUEUE_DRAINED, read from the spindle-reason trailer), the end of the queue.
//
//	examples/go/run.sh queue [-address HOST:PORT]
//
// Last line: "go queue: 50 items, 50 received once each, 50 acked".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	spindlev1 "spindle/v1"
)

const items = 50

func defaultAddress() string {
	if a := os.Getenv("SPINDLE_ADDRESS"); a != "" {
		return a
	}
	return "127.0.0.1:50051"
}

// consume leases items until the queue is closed and drained; returns what it received and acked.
func consume(ctx context.Context, queues spindlev1.QueueServiceClient, queue string) ([]string, int, error) {
	var received []string
	acked := 0
	for ctx.Err() == nil {
		var trailer metadata.MD
		got, err := queues.GetItems(ctx, &spindlev1.GetItemsRequest{
			Queue: queue, MaxItems: 5, Mode: spindlev1.QueueGetMode_QUEUE_GET_MODE_LEASE,
			VisibilityTimeoutMs: 30000, Wait: true, MaxWaitMs: 1000,
		}, grpc.Trailer(&trailer))
		if status.Code(err) == codes.OutOfRange {
			if reason := trailer.Get("spindle-reason"); len(reason) == 1 && reason[0] == "QUEUE_DRAINED" {
				return received, acked, nil // Closed and empty: the end of the queue.
			}
		}
		if err != nil {
			return received, acked, err
		}
		if len(got.GetItems()) == 0 {
			continue
		}
		receipts := make([]string, 0, len(got.GetItems()))
		for _, item := range got.GetItems() {
			received = append(received, string(item.GetPayload()))
			receipts = append(receipts, item.GetReceipt())
		}
		ack, err := queues.AckItems(ctx, &spindlev1.AckItemsRequest{Queue: queue, Receipts: receipts})
		if err != nil {
			return received, acked, err
		}
		for _, r := range ack.GetResults() {
			if r.GetStatus().GetCode() != 0 {
				return received, acked, fmt.Errorf("ack %s: %s", r.GetReceipt(), r.GetStatus().GetMessage())
			}
			acked++
		}
	}
	return received, acked, ctx.Err()
}

func main() {
	address := flag.String("address", defaultAddress(), "spindled host:port (default $SPINDLE_ADDRESS or 127.0.0.1:50051)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	queue := fmt.Sprintf("examples/go-queue/%d-%d", os.Getpid(), time.Now().UnixNano()%1000000)

	conn, err := grpc.Dial(*address, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	queues := spindlev1.NewQueueServiceClient(conn)

	var mu sync.Mutex
	var received []string
	acked := 0
	var wg sync.WaitGroup
	failed := false
	for c := 0; c < 2; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, n, err := consume(ctx, queues, queue)
			mu.Lock()
			defer mu.Unlock()
			received = append(received, got...)
			acked += n
			if err != nil {
				fmt.Fprintln(os.Stderr, "consumer:", err)
				failed = true
			}
		}()
	}
	for start := 0; start < items; start += 10 {
		batch := make([]*spindlev1.QueuePutItem, 0, 10)
		for n := start; n < start+10; n++ {
			batch = append(batch, &spindlev1.QueuePutItem{Payload: []byte(fmt.Sprintf("item-%d", n))})
		}
		if _, err := queues.PutItems(ctx, &spindlev1.PutItemsRequest{Queue: queue, Items: batch, Wait: true}); err != nil {
			fmt.Fprintln(os.Stderr, "put:", err)
			os.Exit(1)
		}
	}
	if _, err := queues.CloseQueue(ctx, &spindlev1.CloseQueueRequest{Name: queue}); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	wg.Wait()
	queues.DeleteQueue(ctx, &spindlev1.DeleteQueueRequest{Name: queue})

	distinct := map[string]bool{}
	for _, r := range received {
		distinct[r] = true
	}
	once := len(received) == items && len(distinct) == items
	fmt.Printf("received %d, distinct %d\n", len(received), len(distinct))
	verdict := "once each"
	if !once {
		verdict = "WRONG"
	}
	fmt.Printf("go queue: %d items, %d received %s, %d acked\n", items, len(received), verdict, acked)
	if !once || failed || acked != items {
		os.Exit(1)
	}
}
