// The interop checker for tests/ledger/test_go_interop.py. It builds offline against Debian's
// golang-golang-x-mod-dev sources (the test copies this directory and may rewrite the path).
module cdcer.example/gointerop

go 1.19

require golang.org/x/mod v0.7.0

replace golang.org/x/mod => /usr/share/gocode/src/golang.org/x/mod
