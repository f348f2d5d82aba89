module github.com/stratus-run/stratus/e2e/testdata/conformance/httpbin

go 1.26.0

tool github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin

require github.com/mccutchen/go-httpbin/v2 v2.26.0 // indirect
