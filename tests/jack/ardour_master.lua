-- Used by tests/jack/test_live_robust.py (Ardour 7 as the clock master, run by ardour7-lua).
-- A headless Ardour as MIDI clock master on the running JACK server, driven on stdin:
-- "locate SAMPLE", "play", "stop", "quit". Prints "ready" once the session runs.
local dir = os.getenv("ARDOUR_SESSION_DIR")
AudioEngine:set_backend("JACK", os.getenv("ARDOUR_CLIENT_NAME") or "ardour", "")
local s = create_session(dir, "clockmaster", 48000)
assert(s, "no session")
ARDOUR.config():set_send_midi_clock(true)
print("ready")
io.stdout:flush()
local src = ARDOUR.TransportRequestSource.TRS_UI
while true do
  local line = io.read("l")
  if line == nil or line == "quit" then break end
  local cmd, arg = line:match("^(%S+)%s*(%S*)")
  if cmd == "locate" then
    s:request_locate(tonumber(arg), false, ARDOUR.LocateTransportDisposition.MustStop, src)
  elseif cmd == "play" then
    s:request_roll(src)
  elseif cmd == "stop" then
    s:request_stop(false, false, src)
  end
  print("ok " .. line)
  io.stdout:flush()
end
close_session()
