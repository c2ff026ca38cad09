// Shared by the join page and the officer console: answering the server's one offer.
// The offer has fixed slots (participant i is always forwarded into slot i), so a page
// maps each incoming track to a slot by its MID. See docs/protocol.md.
"use strict";

// Resolves to the RTCPeerConnection once the answer has been sent.
// local: MediaStream to publish (or null); send: sends a signaling message;
// onTrack(slot, track): a remote track for a slot; onState(state): connection state.
async function acceptOffer(offer, { local, send, onTrack, onState }) {
  // ?relay=1 forces media through TURN (tests, and diagnosing a facility's TURN server).
  const relay = new URLSearchParams(location.search).get("relay") === "1";
  const pc = new RTCPeerConnection({ iceServers: offer.ice_servers || [],
    iceTransportPolicy: relay ? "relay" : "all" });
  pc.onicecandidate = (e) => send({ type: "candidate", candidate: e.candidate ? e.candidate.toJSON() : {} });
  pc.ontrack = (e) => {
    const mid = e.transceiver.mid;
    const slot = offer.slots.findIndex((s) => s.audio === mid || s.video === mid);
    if (slot >= 0) onTrack(slot, e.track);
  };
  pc.onconnectionstatechange = () => onState(pc.connectionState);
  await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  for (const kind of ["audio", "video"]) {
    const mid = offer.publish[kind];
    const tr = pc.getTransceivers().find((t) => t.mid === mid);
    const track = local && local.getTracks().find((t) => t.kind === kind);
    if (tr && track) {
      tr.direction = "sendonly";
      await tr.sender.replaceTrack(track);
      tr.sender.setStreams(local);
      if (kind === "video") {
        await temporalLayers(tr.sender);
        gateLowEncoding(pc, tr.sender);
      }
    }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  send({ type: "answer", sdp: pc.localDescription.sdp });
  return pc;
}

// VP8 in three temporal layers (L1T3): the server can then send a watching officer's
// wall a quarter of the frame rate without asking anything more of this browser. The
// offer also asks for two encodings (simulcast): "f" at full resolution for the visit
// and its recording, "q" at half the width and height and about 100 kb/s for the tiles
// of an officer's wall. A browser that cannot keeps sending one encoding (or one layer),
// which the server forwards whole. "q" starts off: gateLowEncoding turns it on.
async function temporalLayers(sender) {
  try {
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) params.encodings = [{}];
    for (const encoding of params.encodings) {
      encoding.scalabilityMode = "L1T3";
      encoding.scaleResolutionDownBy = encoding.rid === "q" ? 2 : 1;
      if (encoding.rid === "q") Object.assign(encoding, { maxBitrate: 100000, active: false });
    }
    await sender.setParameters(params);
  } catch (err) {
    console.info("temporal layers not available:", err.message);
  }
}

// "q" is sent only while this browser's own estimate of its uplink carries it beside
// "f". Chrome shares its estimate among the encodings lowest first and pauses "f" when
// what is left is under f's minimum (about 200 kb/s at 640x480): with "q" always on, a
// slow uplink, or an estimate still at its 300 kb/s start, would send the officer's tile
// and nothing to the visit and its recording (and an estimate that sends little cannot
// climb). On at LOW_ON_BPS, off under LOW_OFF_BPS; the server moves tiles to "f" while
// "q" is off.
const LOW_ON_BPS = 550000;
const LOW_OFF_BPS = 400000;

function gateLowEncoding(pc, sender) {
  const timer = setInterval(async () => {
    const low = (sender.getParameters().encodings || []).find((e) => e.rid === "q");
    if (!low || pc.connectionState === "closed") {
      clearInterval(timer);
      return;
    }
    const stats = await pc.getStats();
    let estimate = 0;
    for (const s of stats.values()) {
      const pair = s.type === "transport" && stats.get(s.selectedCandidatePairId);
      if (pair && pair.availableOutgoingBitrate) estimate = pair.availableOutgoingBitrate;
    }
    const on = estimate >= (low.active ? LOW_OFF_BPS : LOW_ON_BPS);
    if (on === low.active) return;
    const params = sender.getParameters();
    for (const encoding of params.encodings) if (encoding.rid === "q") encoding.active = on;
    try {
      await sender.setParameters(params);
    } catch (err) {
      console.info("low encoding not switched:", err.message);
    }
  }, 1000);
}

// A tile for one slot: video, audio sink (remote audio is only decoded with a sink),
// name and state lines. Created hidden; shown when a participant takes the slot.
function makeTile(list, slot, muted) {
  const tile = document.createElement("li");
  tile.className = "tile remote";
  tile.dataset.slot = String(slot);
  tile.hidden = true;
  const video = document.createElement("video");
  video.className = "video";
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;  // sound plays through the audio element
  const audio = document.createElement("audio");
  audio.autoplay = true;
  audio.muted = !!muted;
  const name = document.createElement("p");
  name.className = "name";
  const state = document.createElement("p");
  state.className = "state";
  tile.append(video, audio, name, state);
  list.append(tile);
  return tile;
}

function formatSeconds(s) {
  s = Math.max(0, Math.ceil(s));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}
