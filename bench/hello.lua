-- wrk script for bench/api.sh: GET or PUT /hello/<name> for a random seeded user.
-- BENCH_METHOD=GET|PUT (default GET), BENCH_USERS (default 10000).
-- Seeded names are 'u' .. the digits of i (1..BENCH_USERS) mapped 0->a ... 9->j,
-- the same as the SQL seed: 'u' || translate(i::text, '0123456789', 'abcdefghij').

local method = os.getenv("BENCH_METHOD") or "GET"
local users = tonumber(os.getenv("BENCH_USERS") or "10000")
local letters = "abcdefghij"
local names = {}
local headers = { ["Content-Type"] = "application/json" }

local function name_of(i)
  return "u" .. (tostring(i):gsub("%d", function(d)
    local n = tonumber(d) + 1
    return letters:sub(n, n)
  end))
end

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
  for i = 1, users do
    names[i] = name_of(i)
  end
end

function request()
  local path = "/hello/" .. names[math.random(1, users)]
  if method == "PUT" then
    local body = string.format('{"dateOfBirth":"%04d-%02d-%02d"}',
      math.random(1950, 2005), math.random(1, 12), math.random(1, 28))
    return wrk.format("PUT", path, headers, body)
  end
  return wrk.format("GET", path)
end

-- One machine-readable line for bench/api.sh (latencies in microseconds).
-- errors.status counts responses with a status >= 400 (wrk's "Non-2xx or 3xx").
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
