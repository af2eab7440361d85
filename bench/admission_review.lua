-- wrk script: POST one AdmissionReview (a JSON file, written by bench_webhook.py) per request.
--   wrk -t1 -c32 -d10s --latency -s bench/admission_review.lua https://127.0.0.1:9443/pods -- review.json
-- The body is read once per thread in init(); wrk then reuses the formatted request, so
-- the load generator does no per-request Lua work.

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s admission_review.lua URL -- BODY.json")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json"
end
