-- Pktgen-DPDK script for the Airlock DUT benchmark (bench/README.md): replays the pcap that
-- pktgen loaded for a port (-s P:FILE, from scripts/gen-bench-pcap) at a set rate, samples the
-- port's counters every second, and prints packets/s and Gbit/s sent and received. The DUT
-- re-encrypts every packet it accepts and sends it back to the generator, so "received" is
-- what the DUT forwarded.
--
-- Settings come from the environment:
--   AIRLOCK_PORT          pktgen port id (0)
--   AIRLOCK_RATE          offered load, percent of the port's link speed (100)
--   AIRLOCK_SECONDS       how long to sample; with AIRLOCK_COUNT, the longest to wait (10)
--   AIRLOCK_COUNT         packets to send; 0 sends until the window ends, looping over the pcap
--                         (default: AIRLOCK_PCAP_PACKETS, i.e. exactly one pass)
--   AIRLOCK_PCAP_PACKETS  packets in the pcap, as scripts/gen-bench-pcap prints it
--   AIRLOCK_QUIT          1: quit pktgen when done
-- Only the first pass over the pcap is forwarded: the DUT drops later passes as replays, after
-- decrypting them. See bench/README.md for what each mode measures.

-- A non-negative number from the environment; whole when `whole` is set.
local function env_number(name, default, whole)
  local text = os.getenv(name)
  if text == nil or text == "" then
    return default
  end
  local value = tonumber(text)
  if whole and value ~= nil then
    value = math.tointeger(value)
  end
  if value == nil or value < 0 then
    error(name .. " must be a non-negative " .. (whole and "integer" or "number") .. ", not '" ..
          text .. "'")
  end
  return value
end

local pid = env_number("AIRLOCK_PORT", 0, true)
local port = tostring(pid)
local rate = env_number("AIRLOCK_RATE", 100)
local seconds = math.max(env_number("AIRLOCK_SECONDS", 10, true), 1)
local pcap_packets = env_number("AIRLOCK_PCAP_PACKETS", 0, true)
local count = env_number("AIRLOCK_COUNT", pcap_packets, true)
-- Preamble, start delimiter and inter-frame gap (20 bytes) plus the CRC, which the byte
-- counters of most PMDs leave out: what a frame costs on the wire beyond its counted bytes.
local wire_overhead = 24

-- Counters since the last clear. pktgen 23.x returns them flat from portStats(ports, "port");
-- later releases take only the port list and nest them under "curr".
local function counters()
  local ok, all = pcall(pktgen.portStats, port, "port")
  if not ok or all == nil or all[pid] == nil then
    all = pktgen.portStats(port)
  end
  local s = all[pid]
  if s.curr ~= nil then
    s = s.curr
  end
  return {
    opackets = s.opackets, obytes = s.obytes,
    ipackets = s.ipackets, ibytes = s.ibytes,
    missed = (s.imissed or 0) + (s.rx_nombuf or 0) + (s.ierrors or 0),
  }
end

local function mpps(packets, secs)
  return packets / secs / 1e6
end

local function gbits(packets, bytes, secs)
  return bytes * 8 / secs / 1e9, (bytes + packets * wire_overhead) * 8 / secs / 1e9
end

local function line(what, packets, bytes, secs)
  local frames, wire = gbits(packets, bytes, secs)
  return string.format("%-9s %12d packets %9.3f Mpps %8.3f Gbit/s frames %8.3f Gbit/s wire",
                       what, packets, mpps(packets, secs), frames, wire)
end

pktgen.stop(port)
pktgen.pcap(port, "enable")
pktgen.set(port, "rate", rate)
pktgen.set(port, "count", count)
pktgen.clr()
-- pktgen refreshes its counters once a second.
pktgen.delay(1500)
local first = counters()
pktgen.start(port)
print(string.format("airlock replay: port %s, rate %g%%, count %d (0: loop), up to %d s",
                    port, rate, count, seconds))

local previous = first
local active = 0  -- the last second in which anything was sent
local best_tx, best_rx = 0, 0
for second = 1, seconds do
  pktgen.delay(1000)
  local now = counters()
  local tx = now.opackets - previous.opackets
  local rx = now.ipackets - previous.ipackets
  print(string.format("%4d s  tx %9.3f Mpps %8.3f Gbit/s   rx %9.3f Mpps %8.3f Gbit/s", second,
                      mpps(tx, 1), (now.obytes - previous.obytes) * 8 / 1e9, mpps(rx, 1),
                      (now.ibytes - previous.ibytes) * 8 / 1e9))
  previous = now
  if tx > 0 then
    active = second
  end
  best_tx, best_rx = math.max(best_tx, tx), math.max(best_rx, rx)
  if count > 0 and tx == 0 and now.opackets - first.opackets >= count then
    break
  end
end
pktgen.stop(port)
-- Frames still in the DUT's queues come back within this delay.
pktgen.delay(1500)
local last = counters()

local sent = last.opackets - first.opackets
local received = last.ipackets - first.ipackets
local secs = math.max(active, 1)
print(string.format("over the %d s with traffic (averages of whole seconds: rough when the " ..
                    "pass lasts only a few):", secs))
print(line("sent", sent, last.obytes - first.obytes, secs))
print(line("received", received, last.ibytes - first.ibytes, secs))
print(string.format("best second: tx %.3f Mpps, rx %.3f Mpps", mpps(best_tx, 1), mpps(best_rx, 1)))
print(string.format("lost      %12d packets (%.4f%%), generator rx misses %d", sent - received,
                    sent > 0 and 100 * (sent - received) / sent or 0, last.missed - first.missed))
if pcap_packets > 0 and sent > pcap_packets then
  print(string.format("note: %d packets is %.1f passes over the pcap; the DUT drops every pass " ..
                      "after the first as replays, so only %d can come back", sent,
                      sent / pcap_packets, pcap_packets))
end
if count > 0 and sent < count then
  print(string.format("note: sent %d of %d packets within %d s", sent, count, seconds))
end

if os.getenv("AIRLOCK_QUIT") == "1" then
  pktgen.quit()
end
