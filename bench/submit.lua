-- wrk script for POST /api/v1/workloads (bench/submit_throughput.py runs it).
-- Environment: CORRAL_TOKEN (bearer token of a member of the project), CORRAL_PROJECT,
-- CORRAL_CLUSTERS (comma-separated; submissions alternate between them), CORRAL_RUN (a
-- run id, so names are unique across runs).
-- Every request has its own body (a unique name); the done() hook prints one JSON line.

local token = os.getenv("CORRAL_TOKEN")
local project = os.getenv("CORRAL_PROJECT") or "bench-submit"
local run = os.getenv("CORRAL_RUN") or "0"
local clusters = {}
for c in string.gmatch(os.getenv("CORRAL_CLUSTERS") or "gpu-a100-east", "[^,]+") do
  table.insert(clusters, c)
end

local threads = {}
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

local counter = 0

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

local template = '{"type":"fine_tuning","name":"llama-3-8b-sft-r%s-t%d-%d","project":"%s","cluster":"%s",'
  .. '"base_model":"meta-llama/Meta-Llama-3-8B","dataset":"s3://datasets/alpaca-clean",'
  .. '"command":"python finetune.py --epochs 3","resources":{"gpu":1,"cpu":8,"memory":"64Gi"}}'

function request()
  counter = counter + 1
  local cluster = clusters[(counter % #clusters) + 1]
  local body = string.format(template, run, tid or 0, counter, project, cluster)
  return wrk.format("POST", "/api/v1/workloads", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
