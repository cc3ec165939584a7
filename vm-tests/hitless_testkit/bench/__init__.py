"""The hitless benchmark: measures, on this machine and in one run,

  1. steady state (steady.py): hitless against nginx (`return 200`), each on
     one pinned core with the load generator on the other; HTTP/1.1
     keep-alive (wrk), a new connection per request (wrk, `Connection:
     close`) and cleartext HTTP/2 (h2load); req/s, p50/p99 and server CPU
     time per request; the same over TLS (the tls part, with tls.py's
     certificate and pinned cipher suite): HTTPS keep-alive (wrk) and a new
     connection with a full handshake per request (ab);
  2. upgrade under load (upgrade.py), in a Debian container with systemd as
     PID 1 (hitless_testkit.nspawn): hitless as shipped (units/: slots on
     one socket) flipped by `systemctl reload` and restarted by `systemctl
     restart`, hitless binding by itself, and a baseline Go server
     (bench/baseline-go: fd 3 plus http.Server.Shutdown), each upgraded onto
     the other version under the same open-loop load (bench/loadgen): with
     nothing else in flight, with slow requests in flight, and with a dead
     peer connected to the old process; and under wrk;
  3. cost (cost.py): exec to READY=1, idle and loaded RSS, binary size.

host.py watches the machine (CPU used by other jobs) and repeats noisy runs.
Normally started by bench/run, which installs the tools and builds the
binaries first; `python3 -m hitless_testkit.bench` writes results.json, and
`python3 -m hitless_testkit.bench.report` turns it into docs/bench.md and
docs/bench.png.
"""
