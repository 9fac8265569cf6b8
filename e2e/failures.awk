# Prints, after a `go test -v` run, what each failed test said: its
# "<file>_test.go:<line>:" messages, without the podtail logs a failed test
# dumps. A failed e2e test can dump hundreds of log lines after its error,
# and CI shows only the end of the output.
/^=== (RUN|CONT)/ { name = $3; n[name] = 0; next }
/_test\.go:[0-9]+: / && !/podtail log:/ && !/sidecar log:/ {
	if (name != "") { msg[name, n[name]++] = substr($0, 1, 600) }
	next
}
/--- FAIL: / {
	t = $3
	print "FAILED " t
	for (i = 0; i < n[t] && i < 20; i++) print msg[t, i]
	fails++
}
END { if (fails == 0) print "(no failed test found in the output)" }
