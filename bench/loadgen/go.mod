// The load generator's h2c client is golang.org/x/net/http2 (Go 1.19's
// standard library has none). It is taken from Debian's
// golang-golang-x-net-dev (scripts/install-deps), so the build needs no
// network: the replace directives point at that package's source.
module hitless.invalid/bench/loadgen

go 1.19

require golang.org/x/net v0.7.0

require golang.org/x/text v0.7.0 // indirect

replace (
	golang.org/x/net => /usr/share/gocode/src/golang.org/x/net
	golang.org/x/text => /usr/share/gocode/src/golang.org/x/text
)
