// loadgen: open-loop load for the upgrade benchmark, recording every request.
//
// Each client mode gets its own schedule: request i is due at
// start + i/rate, whatever happened to the earlier ones (open loop), so a
// server that stalls during a restart cannot slow the offered load down, and
// every latency is measured from the moment the request was due (no
// coordinated omission: time spent queued in the client counts).
//
//	keep-alive  HTTP/1.1 over a fixed pool of -conns connections; a due
//	            request waits for a free connection. A connection the server
//	            closed while idle, noticed before sending (a zero-byte
//	            MSG_PEEK), is replaced without loss, as pooling clients do;
//	            a request written to a connection that then closes without
//	            an answer has failed (the idle-close race).
//	new-conn    a new TCP connection per request (Connection: close).
//	h2          HTTP/2 over cleartext with prior knowledge (golang.org/x/net
//	            http2.Transport): requests multiplexed over one connection,
//	            a new one after GOAWAY; streams the server refused unprocessed
//	            are retried by the transport, as the protocol allows.
//	slow        -slow-count requests to -slow-path, each on its own
//	            connection, sent -slow-at after the start.
//
// Requests are due for -duration, or until the -stop-file appears (the
// caller creates it once what it measures is over), whichever comes first;
// then the ones in flight are awaited.
//
// Output (-out): one line per request, tab-separated:
// mode, due time (unix ns), latency (µs), "ok" or the failure reason, the
// x-hitless-version that answered. A summary goes to stdout as JSON.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

type record struct {
	mode    string
	due     int64 // unix ns
	latency int64 // ns
	reason  string
	version string
}

type recorder struct {
	mu      sync.Mutex
	records []record
}

func (r *recorder) add(rec record) {
	r.mu.Lock()
	r.records = append(r.records, rec)
	r.mu.Unlock()
}

var (
	addr        = flag.String("addr", "127.0.0.1:8080", "server host:port")
	path        = flag.String("path", "/", "request path")
	modesFlag   = flag.String("modes", "keep-alive,new-conn,h2", "client modes, comma-separated")
	rate        = flag.Float64("rate", 1000, "requests per second per mode")
	conns       = flag.Int("conns", 16, "keep-alive connections")
	startAt     = flag.Int64("start-at", 0, "start at this unix time in ns (0: now)")
	duration    = flag.Duration("duration", 5*time.Second, "how long requests are sent")
	timeout     = flag.Duration("timeout", 30*time.Second, "a request with no complete answer after this has failed")
	slowPath    = flag.String("slow-path", "/slow?ms=3000", "path of the slow requests")
	slowCount   = flag.Int("slow-count", 0, "slow requests to send (0: none)")
	slowAt      = flag.Duration("slow-at", time.Second, "when to send the slow requests, after the start")
	maxInflight = flag.Int("max-inflight", 4096, "cap on requests in flight per mode (new-conn, h2)")
	out         = flag.String("out", "", "write one line per request to this file")
	stopFile    = flag.String("stop-file", "", "no request is due once this file exists (checked every 10 ms)")

	rec          recorder
	peekRetries  atomic.Int64 // keep-alive connections found closed before sending
	h2Dials      atomic.Int64
	h2DialFailed atomic.Int64
)

func main() {
	flag.Parse()
	start := time.Now()
	if *startAt > 0 {
		start = time.Unix(0, *startAt)
		time.Sleep(time.Until(start))
	}
	stopAt.Store(start.Add(*duration).UnixNano())
	if *stopFile != "" {
		go watchStopFile(*stopFile)
	}

	var wg sync.WaitGroup
	for _, m := range strings.Split(*modesFlag, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		var dispatch func(due time.Time)
		var finish func()
		switch m {
		case "keep-alive":
			dispatch, finish = keepAlive(&wg)
		case "new-conn":
			dispatch, finish = spawner(&wg, newConnRequest)
		case "h2":
			dispatch, finish = spawner(&wg, h2Requester())
		default:
			fmt.Fprintf(os.Stderr, "loadgen: unknown mode %q\n", m)
			os.Exit(2)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			schedule(start, dispatch)
			finish()
		}()
	}
	if *slowCount > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			due := start.Add(*slowAt)
			time.Sleep(time.Until(due))
			var sw sync.WaitGroup
			for i := 0; i < *slowCount; i++ {
				sw.Add(1)
				go func() {
					defer sw.Done()
					v, reason := h1Once(*slowPath, false)
					rec.add(record{"slow", due.UnixNano(), time.Since(due).Nanoseconds(), reason, v})
				}()
			}
			sw.Wait()
		}()
	}
	wg.Wait()

	if *out != "" {
		if err := writeRecords(*out, start); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
			os.Exit(1)
		}
	}
	summary := map[string]map[string]int64{}
	for _, r := range rec.records {
		s := summary[r.mode]
		if s == nil {
			s = map[string]int64{}
			summary[r.mode] = s
		}
		s["requests"]++
		if r.reason != "" {
			s["failed"]++
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"start_ns": start.UnixNano(), "modes": summary,
		"keepalive_closed_before_send": peekRetries.Load(), "h2_connections": h2Dials.Load(),
	})
}

// stopAt: unix ns from which no request is due (-duration, or earlier once
// the -stop-file appears).
var stopAt atomic.Int64

func watchStopFile(p string) {
	for {
		if _, err := os.Stat(p); err == nil {
			now := time.Now().UnixNano()
			if now < stopAt.Load() {
				stopAt.Store(now)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// schedule calls dispatch for every due time in [start, stopAt), at that
// time or as soon as possible after it.
func schedule(start time.Time, dispatch func(time.Time)) {
	period := time.Duration(float64(time.Second) / *rate)
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * period)
		if due.UnixNano() >= stopAt.Load() {
			return
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		dispatch(due)
	}
}

// --- HTTP/1.1 ---------------------------------------------------------------

type h1conn struct {
	c  *net.TCPConn
	br *bufio.Reader
}

func dialH1() (*h1conn, error) {
	c, err := net.DialTimeout("tcp", *addr, *timeout)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetNoDelay(true)
	return &h1conn{c: tc, br: bufio.NewReaderSize(tc, 4096)}, nil
}

// peerClosed: has the server closed (or reset) this idle connection? A
// non-blocking MSG_PEEK: EAGAIN means open and quiet.
func (h *h1conn) peerClosed() bool {
	if h.br.Buffered() > 0 {
		return true // bytes nobody asked for: not a connection to reuse
	}
	raw, err := h.c.SyscallConn()
	if err != nil {
		return true
	}
	closed := true
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = !errors.Is(err, syscall.EAGAIN)
		return true
	})
	return closed
}

func requestBytes(p string, close bool) []byte {
	s := "GET " + p + " HTTP/1.1\r\nHost: " + *addr + "\r\nUser-Agent: hitless-bench-loadgen\r\n"
	if close {
		s += "Connection: close\r\n"
	}
	return []byte(s + "\r\n")
}

// do sends one request and reads the answer; returns the version, whether
// the connection must be closed afterwards, and the failure reason ("" = ok).
func (h *h1conn) do(req []byte) (version string, mustClose bool, reason string) {
	_ = h.c.SetDeadline(time.Now().Add(*timeout))
	if _, err := h.c.Write(req); err != nil {
		return "", true, classify(err)
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return "", true, classify(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", true, classify(err)
	}
	return checkResponse(resp)
}

func checkResponse(resp *http.Response) (string, bool, string) {
	v := resp.Header.Get("x-hitless-version")
	switch {
	case resp.StatusCode/100 != 2:
		return v, resp.Close, fmt.Sprintf("status-%d", resp.StatusCode)
	case v == "":
		return "", resp.Close, "no-version"
	}
	return v, resp.Close, ""
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "GOAWAY"):
		return "goaway"
	}
	return "other"
}

// h1Once: one request on a fresh connection.
func h1Once(p string, close bool) (string, string) {
	c, err := dialH1()
	if err != nil {
		return "", classify(err)
	}
	defer c.c.Close()
	v, _, reason := c.do(requestBytes(p, close))
	return v, reason
}

func newConnRequest(due time.Time) {
	v, reason := h1Once(*path, true)
	rec.add(record{"new-conn", due.UnixNano(), time.Since(due).Nanoseconds(), reason, v})
}

func keepAlive(wg *sync.WaitGroup) (func(time.Time), func()) {
	queue := make(chan time.Time, 1<<20)
	req := requestBytes(*path, false)
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *h1conn
			for due := range queue {
				if c != nil && c.peerClosed() {
					peekRetries.Add(1)
					c.c.Close()
					c = nil
				}
				if c == nil {
					var err error
					if c, err = dialH1(); err != nil {
						rec.add(record{"keep-alive", due.UnixNano(), time.Since(due).Nanoseconds(), classify(err), ""})
						c = nil
						continue
					}
				}
				v, mustClose, reason := c.do(req)
				rec.add(record{"keep-alive", due.UnixNano(), time.Since(due).Nanoseconds(), reason, v})
				if mustClose || reason != "" {
					c.c.Close()
					c = nil
				}
			}
			if c != nil {
				c.c.Close()
			}
		}()
	}
	return func(due time.Time) { queue <- due }, func() { close(queue) }
}

// spawner runs each request in its own goroutine, at most -max-inflight at
// once (beyond that a due request waits, and the wait counts).
func spawner(wg *sync.WaitGroup, do func(time.Time)) (func(time.Time), func()) {
	sem := make(chan struct{}, *maxInflight)
	return func(due time.Time) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			do(due)
		}()
	}, func() {}
}

// --- HTTP/2 -----------------------------------------------------------------

func h2Requester() func(time.Time) {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLS: func(network, a string, _ *tls.Config) (net.Conn, error) {
			h2Dials.Add(1)
			c, err := net.DialTimeout(network, a, *timeout)
			if err != nil {
				h2DialFailed.Add(1)
			}
			return c, err
		},
	}
	client := &http.Client{Transport: tr}
	url := "http://" + *addr + *path
	return func(due time.Time) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		v, reason := "", ""
		resp, err := client.Do(req)
		if err != nil {
			reason = classify(err)
		} else {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				reason = classify(err)
			} else {
				v, _, reason = checkResponse(resp)
			}
		}
		rec.add(record{"h2", due.UnixNano(), time.Since(due).Nanoseconds(), reason, v})
	}
}

func writeRecords(file string, start time.Time) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "# start_ns=%d keepalive_closed_before_send=%d h2_connections=%d h2_dial_failures=%d\n",
		start.UnixNano(), peekRetries.Load(), h2Dials.Load(), h2DialFailed.Load())
	for _, r := range rec.records {
		reason := r.reason
		if reason == "" {
			reason = "ok"
		}
		v := r.version
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", r.mode, r.due, r.latency/1000, reason, v)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
