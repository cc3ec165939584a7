// hitless-go-client sends requests to one URL in a loop with Go's net/http
// client, default Transport: it keeps connections alive and reuses them. It
// retries on its own a request that was not written, and an idempotent
// request (GET) on a reused connection that the server closed before any
// byte of the answer (net/http: persistConn.shouldRetryRequest, following
// RFC 9112 section 9.3.1); it never retries a POST that was written.
//
//	hitless-go-client -url URL -report FILE [-method GET|POST] [-interval 0.01] [-timeout 10]
//		[-pause-every N] [-pause 0.25]
//
// A POST carries a small body. hitless serves only GET and HEAD, so a POST
// is answered 405 Method Not Allowed (RFC 9110 section 15.5.6), a complete
// response from the version that received it: that is the expected status.
//
// Pacing (-interval, -pause-every, -pause) is that of
// vm-tests/clients/client_report.py. Runs until SIGTERM or SIGINT, then
// finishes the request in flight and writes the report described there
// (rewritten every 0.2 s while running, "final": true at the end).
// Standard library only.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

const (
	versionHeader = "x-hitless-version"
	maxFailures   = 100
	rewrite       = 200 * time.Millisecond
)

type failure struct {
	AtS   float64 `json:"at_s"`
	Error string  `json:"error"`
}

type report struct {
	Client      string         `json:"client"`
	Library     string         `json:"library"`
	Method      string         `json:"method"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Errors      map[string]int `json:"errors"`
	Failures    []failure      `json:"failures"`
	Versions    []string       `json:"versions"`
	Connections int            `json:"connections"`
	Seconds     float64        `json:"seconds"`
	Final       bool           `json:"final"`
}

type recorder struct {
	path      string
	expected  int
	start     time.Time
	lastWrite time.Time
	r         report
}

func (rec *recorder) answered(status int, version string) {
	rec.r.Requests++
	if version != "" && (len(rec.r.Versions) == 0 || rec.r.Versions[len(rec.r.Versions)-1] != version) {
		rec.r.Versions = append(rec.r.Versions, version)
	}
	switch {
	case status != rec.expected:
		rec.failure(fmt.Sprintf("status %d (expected %d)", status, rec.expected))
	case version == "":
		rec.failure("no " + versionHeader + " header")
	default:
		rec.r.OK++
	}
}

func (rec *recorder) failed(err error) {
	rec.r.Requests++
	rec.failure(err.Error())
}

func (rec *recorder) failure(text string) {
	rec.r.Failed++
	rec.r.Errors[text]++
	if len(rec.r.Failures) < maxFailures {
		rec.r.Failures = append(rec.r.Failures, failure{AtS: time.Since(rec.start).Seconds(), Error: text})
	}
}

func (rec *recorder) write(final bool) error {
	rec.r.Seconds = time.Since(rec.start).Seconds()
	rec.r.Final = final
	data, err := json.Marshal(&rec.r)
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	tmp := rec.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := os.Rename(tmp, rec.path); err != nil {
		return fmt.Errorf("replacing the report: %w", err)
	}
	rec.lastWrite = time.Now()
	return nil
}

// once makes one request and records its outcome.
func once(ctx context.Context, client *http.Client, rec *recorder, method, url string) {
	var body io.Reader
	if method == http.MethodPost {
		// bytes.Reader: NewRequest sets GetBody, so the Transport may
		// resend the body if the request was never written.
		body = bytes.NewReader([]byte(`{"hello":"hitless"}`))
	}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			rec.r.Connections++
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, body)
	if err != nil {
		rec.failed(err)
		return
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		rec.failed(err)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	closeErr := resp.Body.Close()
	if err == nil {
		err = closeErr
	}
	if err != nil {
		rec.failed(fmt.Errorf("reading the body: %w", err))
		return
	}
	rec.answered(resp.StatusCode, resp.Header.Get(versionHeader))
}

func run() error {
	url := flag.String("url", "", "what to request, e.g. http://127.0.0.1:8080/")
	path := flag.String("report", "", "the JSON report to (re)write")
	method := flag.String("method", http.MethodGet, "GET or POST")
	intervalS := flag.Float64("interval", 0.01, "seconds between requests")
	timeoutS := flag.Float64("timeout", 10, "seconds a request may take")
	pauseEvery := flag.Int("pause-every", 0, "pause after every N-th request (0: never)")
	pauseS := flag.Float64("pause", 0.25, "seconds of each pause")
	flag.Parse()
	if *url == "" || *path == "" || (*method != http.MethodGet && *method != http.MethodPost) {
		flag.Usage()
		os.Exit(2)
	}
	interval := time.Duration(*intervalS * float64(time.Second))
	timeout := time.Duration(*timeoutS * float64(time.Second))
	pause := time.Duration(*pauseS * float64(time.Second))
	expected := http.StatusOK
	if *method == http.MethodPost {
		expected = http.StatusMethodNotAllowed
	}
	rec := &recorder{
		path:     *path,
		expected: expected,
		start:    time.Now(),
		r: report{
			Client:   "go-net-http-" + map[string]string{http.MethodGet: "get", http.MethodPost: "post"}[*method],
			Library:  "Go " + runtime.Version() + " net/http",
			Method:   *method,
			Errors:   map[string]int{},
			Failures: []failure{},
			Versions: []string{},
		},
	}
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	client := &http.Client{Timeout: timeout}
	for stop.Err() == nil {
		// The request itself is not cancelled by the stop signal: the one
		// in flight is finished and counted.
		once(context.Background(), client, rec, *method, *url)
		if time.Since(rec.lastWrite) >= rewrite {
			if err := rec.write(false); err != nil {
				return err
			}
		}
		wait := interval
		if *pauseEvery > 0 && rec.r.Requests%*pauseEvery == 0 {
			wait = pause
		}
		select {
		case <-stop.Done():
		case <-time.After(wait):
		}
	}
	return rec.write(true)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "hitless-go-client: %v\n", err)
		os.Exit(1)
	}
}
