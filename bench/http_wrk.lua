-- http_wrk.lua -- bench/http.sh's wrk script: POST the same JSON body to
-- /v1/call/echo on every request; at the end print one JSON line (prefix
-- "WRKJSON ") with requests, duration, errors and latency percentiles (us).
wrk.method = "POST"
wrk.path = "/v1/call/echo"
wrk.body = '{"id":12345,"user":"someone@example.org","tags":["a","b","c"],"n":3.5}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
