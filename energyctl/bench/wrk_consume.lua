-- wrk script for `energyctl bench`: POST /api/energy/consume/ with a new key per request.
-- Environment: BENCH_ACCOUNTS (accounts 1..N, picked at random; 1 = one hot account),
-- BENCH_PREFIX (keeps keys unique across runs), BENCH_HEADERS ("Name: value" lines).
-- done() prints one JSON line: counts per status and latency quantiles in microseconds.

local threads = {}
local accounts = tonumber(os.getenv("BENCH_ACCOUNTS") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or "wrk"

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
  math.randomseed(tid * 7919)
  for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+):%s*([^\n]*)") do
    wrk.headers[name] = value
  end
  wrk.method = "POST"
end

function request()
  counter = counter + 1
  local account = accounts == 1 and 1 or math.random(1, accounts)
  local body = string.format('{"account_id": %d, "amount": 1, "idempotency_key": "%s-%d-%d"}',
                             account, prefix, tid, counter)
  return wrk.format(nil, "/api/energy/consume/", nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for _, status in ipairs({200, 201, 400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503}) do
      local seen = thread:get("statuses")[status]
      if seen then counts[status] = (counts[status] or 0) + seen end
    end
  end
  local parts = {}
  for status, count in pairs(counts) do table.insert(parts, string.format('"%d": %d', status, count)) end
  local quantiles = {}
  for q = 1, 99 do table.insert(quantiles, latency:percentile(q)) end
  table.insert(quantiles, latency:percentile(99.9))
  io.write(string.format('{"requests": %d, "duration_us": %d, "socket_errors": %d, "statuses": {%s}, '
                         .. '"quantiles_us": [%s]}\n',
                         summary.requests, summary.duration,
                         summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
                         table.concat(parts, ", "), table.concat(quantiles, ", ")))
end
