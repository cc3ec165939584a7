// The baseline Go server the benchmark compares hitless against: a minimal
// Go server written the way the common recipe goes. systemd owns the
// listening socket (baseline-go.socket) and passes it as fd 3; the server wraps it with
// net.FileListener and serves it with net/http; on SIGTERM it calls
// http.Server.Shutdown and exits when that returns. The unit is
// Type=simple (no sd_notify).
//
// Deliberately nothing more: no handling of the idle keep-alive race, no
// cleartext HTTP/2 (net/http serves h2 only over TLS). That is the point of
// the comparison.
//
// The only addition is measurement: every response carries
// x-hitless-version (set at build time with -ldflags "-X main.version=..."),
// so the load generator can tell the old process from the new one, exactly
// as it does for hitless.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var version = "dev"

func main() {
	if os.Getenv("LISTEN_FDS") != "1" {
		log.Fatal("baseline-go: expects exactly one socket from systemd (LISTEN_FDS=1)")
	}
	ln, err := net.FileListener(os.NewFile(3, "baseline-go.socket"))
	if err != nil {
		log.Fatalf("baseline-go: fd 3: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from baseline-go %s (pid %d)\n", version, os.Getpid())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok\n")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 60000 {
			http.Error(w, "ms must be 0..=60000", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %d ms\n", ms)
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-hitless-version", version)
		mux.ServeHTTP(w, r)
	})}

	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("baseline-go: shutdown: %v", err)
		}
		close(done)
	}()

	log.Printf("baseline-go %s serving fd 3 (%s)", version, ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatalf("baseline-go: %v", err)
	}
	<-done
}
