//! The Lua scripts: every change of a job's state is one script, so it is
//! atomic on the server and a client dying half-way leaves nothing half-done.
//!
//! All queue scripts get the same KEYS (stream, retry, leases, dead, ready) and
//! `ARGV[1]` = the queue's key base (`<prefix>:<queue>`), from which the job
//! keys are built. Time is the server's (`TIME`), so clients' clocks never matter.
//!
//! Job hash `<base>:job:<id>`: `payload`, `attempts` (deliveries so far),
//! `errors` (JSON array, oldest first), `state` (waiting | running | retrying |
//! dead), `entry` (its stream entry while waiting or running), `token` (the
//! current reservation), `dead_entry` (its entry in the dead stream).

/// Shared by every queue script.
const PRELUDE: &str = r#"
local stream, retry, leases, dead, ready = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local base = ARGV[1]
local GROUP = 'workers'

local function jobkey(id) return base .. ':job:' .. id end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Into the stream as a waiting job (a new entry each time: a retry or a
-- requeue never reuses the entry of an earlier run).
local function push(id)
  local eid = redis.call('XADD', stream, '*', 'id', id)
  redis.call('HSET', jobkey(id), 'entry', eid, 'state', 'waiting')
  redis.call('INCR', ready)
  return eid
end

local function append_error(jk, err)
  local raw = redis.call('HGET', jk, 'errors')
  local errors = {}
  if raw and raw ~= '[]' and raw ~= '{}' then errors = cjson.decode(raw) end
  errors[#errors + 1] = err
  redis.call('HSET', jk, 'errors', cjson.encode(errors))
end

-- The job (already acked in the group, error appended) joins the dead letters.
local function to_dead(id, jk, now)
  local h = redis.call('HMGET', jk, 'payload', 'attempts', 'errors')
  local deid = redis.call('XADD', dead, '*', 'id', id, 'payload', h[1] or '',
    'attempts', h[2] or '0', 'errors', h[3] or '[]', 'died_at', string.format('%d', now))
  redis.call('HSET', jk, 'state', 'dead', 'dead_entry', deid)
  redis.call('HDEL', jk, 'token', 'entry')
end

-- Whether `token` is the current reservation of the job at entry `eid`.
local function holds(jk, eid, token)
  local h = redis.call('HMGET', jk, 'entry', 'token', 'state')
  return h[1] == eid and h[2] == token and h[3] == 'running'
end

-- The retry mover: due retries back into the stream.
local function move_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', retry, id)
    if redis.call('HGET', jobkey(id), 'state') == 'retrying' then push(id) end
  end
  return #due
end

-- A delivery starts: one more attempt, a fresh token, a lease until now + vis.
local function start(id, eid, now, vis, token)
  local jk = jobkey(id)
  local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
  redis.call('HSET', jk, 'token', token, 'state', 'running', 'entry', eid)
  redis.call('ZADD', leases, now + vis, id)
  local h = redis.call('HMGET', jk, 'payload', 'errors')
  return {'job', id, eid, tostring(attempts), h[1] or '', h[2] or '[]', token}
end

-- Reservations past their lease. A job delivered `max_deliveries` times
-- without an ack or a failure is poison (it kills or stalls its worker every
-- time): dead letters. Others are claimed by `consumer` and started again;
-- without a consumer (the maintenance sweep) they are left for the next reserve.
local function expired(now, limit, consumer, vis, token, max_deliveries)
  local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
  local poisoned, waiting = 0, 0
  for _, id in ipairs(ids) do
    local jk = jobkey(id)
    local eid = redis.call('HGET', jk, 'entry')
    local p = {}
    if eid then p = redis.call('XPENDING', stream, GROUP, eid, eid, 1) end
    if #p == 0 then
      redis.call('ZREM', leases, id)
    else
      local deliveries = tonumber(p[1][4])
      if deliveries >= max_deliveries then
        redis.call('ZREM', leases, id)
        redis.call('XACK', stream, GROUP, eid)
        append_error(jk, 'poison: reserved ' .. deliveries ..
          ' times and never acked or failed (the worker died or stalled each time)')
        to_dead(id, jk, now)
        poisoned = poisoned + 1
      elseif consumer then
        -- Not JUSTID: the claim counts as a delivery (XPENDING's counter).
        local c = redis.call('XCLAIM', stream, GROUP, consumer, 0, eid)
        if #c > 0 then return start(id, eid, now, vis, token), poisoned, waiting end
        redis.call('ZREM', leases, id)
      else
        waiting = waiting + 1
      end
    end
  end
  return nil, poisoned, waiting
end
"#;

const ENQUEUE: &str = r#"
-- ARGV: base, id, payload, dedup ttl (s)
local id = ARGV[2]
local jk = jobkey(id)
if redis.call('EXISTS', jk) == 1 then return 0 end
if not redis.call('SET', base .. ':id:' .. id, '1', 'NX', 'EX', ARGV[4]) then return 0 end
redis.call('HSET', jk, 'payload', ARGV[3], 'attempts', 0, 'errors', '[]')
push(id)
return 1
"#;

const RESERVE: &str = r#"
-- ARGV: base, consumer, visibility (ms), token, max deliveries, batch size.
-- Returns the jobs taken (7 fields each, 'job' first), or a wait hint.
local consumer, vis, token = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local max_deliveries = tonumber(ARGV[5])
local want = tonumber(ARGV[6] or '1')
if want < 1 then want = 1 end
local now = now_ms()
local out, got = {}, 0
local function add(job)
  for _, v in ipairs(job) do out[#out + 1] = v end
  got = got + 1
end
move_due(now, math.max(100, want))
while got < want do
  local job = expired(now, 20, consumer, vis, token, max_deliveries)
  if not job then break end
  add(job)
end
local misses = 0
while got < want and misses < 20 do
  local r = redis.pcall('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', want - got, 'STREAMS', stream, '>')
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'NOGROUP') then return redis.error_reply(r.err) end
    -- From 0: jobs enqueued before any worker came are delivered too.
    redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
    r = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', want - got, 'STREAMS', stream, '>')
  end
  if not r then break end
  for _, entry in ipairs(r[1][2]) do
    local eid, fields = entry[1], entry[2]
    redis.call('DECR', ready)
    local id = fields[2]
    local h = redis.call('HMGET', jobkey(id), 'state', 'entry')
    if h[1] == 'waiting' and h[2] == eid then
      add(start(id, eid, now, vis, token))
    else
      -- An entry whose job moved on (purged, or requeued elsewhere): nothing to run.
      redis.call('XACK', stream, GROUP, eid)
      misses = misses + 1
    end
  end
end
if got > 0 then return out end
-- Nothing now: when the next retry or lease is due, and the newest entry to
-- wait behind (XREAD BLOCK from it wakes on the next enqueue).
local next_due = -1
for _, z in ipairs({retry, leases}) do
  local f = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #f > 0 then
    local d = tonumber(f[2]) - now
    if d < 0 then d = 0 end
    if next_due < 0 or d < next_due then next_due = d end
  end
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
return {'wait', string.format('%d', next_due), last_id}
"#;

const ACK: &str = r#"
-- ARGV: base, id, entry. Acking a run that was reclaimed meanwhile still
-- finishes the job (it did run); acking one that moved on is a no-op.
local id, eid = ARGV[2], ARGV[3]
local jk = jobkey(id)
if redis.call('HGET', jk, 'entry') ~= eid then return 0 end
redis.call('XACK', stream, GROUP, eid)
redis.call('ZREM', leases, id)
local attempts = redis.call('HGET', jk, 'attempts')
redis.call('DEL', jk)
return tonumber(attempts) or 0
"#;

const FAIL: &str = r#"
-- ARGV: base, id, entry, token, error, delay ms (-1: dead). -1 = not held.
local id, eid, token, err, delay = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local jk = jobkey(id)
if not holds(jk, eid, token) then return -1 end
local now = now_ms()
redis.call('XACK', stream, GROUP, eid)
redis.call('ZREM', leases, id)
append_error(jk, err)
if delay >= 0 then
  redis.call('HDEL', jk, 'token', 'entry')
  redis.call('HSET', jk, 'state', 'retrying')
  redis.call('ZADD', retry, now + delay, id)
  return 1
end
to_dead(id, jk, now)
return 0
"#;

const EXTEND: &str = r#"
-- ARGV: base, id, entry, token, consumer, visibility (ms)
local id, eid, token, consumer, vis = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local jk = jobkey(id)
if not holds(jk, eid, token) then return 0 end
-- JUSTID: resets the entry's idle time without counting a delivery.
redis.call('XCLAIM', stream, GROUP, consumer, 0, eid, 'JUSTID')
redis.call('ZADD', leases, now_ms() + vis, id)
return 1
"#;

const EXTEND_MANY: &str = r#"
-- ARGV: base, consumer, visibility (ms), then id, entry, token of each job.
-- One 1 (extended) or 0 (not held) per job.
local consumer, vis = ARGV[2], tonumber(ARGV[3])
local deadline = now_ms() + vis
local out = {}
for i = 4, #ARGV, 3 do
  local id, eid, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if holds(jobkey(id), eid, token) then
    redis.call('XCLAIM', stream, GROUP, consumer, 0, eid, 'JUSTID')
    redis.call('ZADD', leases, deadline, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#;

const RELEASE: &str = r#"
-- ARGV: base, id, entry, token, delay ms. Hands the reservation back without
-- counting it: the next reservation gets the same attempt number. 1 =
-- released, 0 = not held.
local id, eid, token, delay = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local jk = jobkey(id)
if not holds(jk, eid, token) then return 0 end
redis.call('XACK', stream, GROUP, eid)
redis.call('ZREM', leases, id)
local attempts = tonumber(redis.call('HGET', jk, 'attempts')) or 0
if attempts > 0 then redis.call('HSET', jk, 'attempts', attempts - 1) end
redis.call('HDEL', jk, 'token')
if delay > 0 then
  redis.call('HDEL', jk, 'entry')
  redis.call('HSET', jk, 'state', 'retrying')
  redis.call('ZADD', retry, now_ms() + delay, id)
else
  push(id)
end
return 1
"#;

const REQUEUE: &str = r#"
-- ARGV: base, id
local id = ARGV[2]
local jk = jobkey(id)
if redis.call('HGET', jk, 'state') ~= 'dead' then return 0 end
local deid = redis.call('HGET', jk, 'dead_entry')
if deid then redis.call('XDEL', dead, deid) end
redis.call('HSET', jk, 'attempts', 0, 'errors', '[]')
redis.call('HDEL', jk, 'dead_entry')
push(id)
return 1
"#;

const PURGE_DEAD: &str = r#"
-- ARGV: base, batch size. Deletes the oldest batch; returns how many.
local entries = redis.call('XRANGE', dead, '-', '+', 'COUNT', tonumber(ARGV[2]))
for _, e in ipairs(entries) do
  local fields, id = e[2], nil
  for i = 1, #fields, 2 do if fields[i] == 'id' then id = fields[i + 1] end end
  if id and redis.call('HGET', jobkey(id), 'dead_entry') == e[1] then
    redis.call('DEL', jobkey(id))
  end
  redis.call('XDEL', dead, e[1])
end
return #entries
"#;

const MOVE_DUE: &str = r#"
-- ARGV: base, limit
return move_due(now_ms(), tonumber(ARGV[2]))
"#;

const SWEEP: &str = r#"
-- ARGV: base, limit, max deliveries. Returns {poisoned, expired and waiting}.
local _, poisoned, waiting = expired(now_ms(), tonumber(ARGV[2]), nil, 0, '', tonumber(ARGV[3]))
return {poisoned, waiting}
"#;

const TRIM: &str = r#"
-- ARGV: base, idle consumer ms. Drops acked entries only: everything below the
-- oldest pending entry (or, with none pending, below the last delivered one;
-- undelivered entries are above it). Returns {trimmed, consumers forgotten}.
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) ~= 'table' or groups.err then return {0, 0} end
local last_delivered = nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == GROUP then last_delivered = info['last-delivered-id'] end
end
if not last_delivered then return {0, 0} end
local summary = redis.call('XPENDING', stream, GROUP)
local min_id = last_delivered
if tonumber(summary[1]) > 0 then min_id = summary[2] end
local trimmed = redis.call('XTRIM', stream, 'MINID', min_id)
-- Every worker process is a consumer (host-pid-uuid); forget those long idle
-- with nothing pending (a live one is recreated by its next read).
local forgotten = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, GROUP)) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', stream, GROUP, info['name'])
    forgotten = forgotten + 1
  end
end
return {trimmed, forgotten}
"#;

/// Compare-and-delete: only the holder's token releases a lease.
pub(crate) const LEASE_RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

pub(crate) struct Scripts {
    pub enqueue: redis::Script,
    pub reserve: redis::Script,
    pub ack: redis::Script,
    pub fail: redis::Script,
    pub extend: redis::Script,
    pub extend_many: redis::Script,
    pub release: redis::Script,
    pub requeue: redis::Script,
    pub purge_dead: redis::Script,
    pub move_due: redis::Script,
    pub sweep: redis::Script,
    pub trim: redis::Script,
}

fn with_prelude(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            enqueue: with_prelude(ENQUEUE),
            reserve: with_prelude(RESERVE),
            ack: with_prelude(ACK),
            fail: with_prelude(FAIL),
            extend: with_prelude(EXTEND),
            extend_many: with_prelude(EXTEND_MANY),
            release: with_prelude(RELEASE),
            requeue: with_prelude(REQUEUE),
            purge_dead: with_prelude(PURGE_DEAD),
            move_due: with_prelude(MOVE_DUE),
            sweep: with_prelude(SWEEP),
            trim: with_prelude(TRIM),
        }
    }
}
