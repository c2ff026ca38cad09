// Connection quality on the join page, apart from its layout: reports the connection's
// statistics to the server (the "stats" message, at the rate the server asks in
// "joined"), shows each participant's level on their tile (bars, with a text
// alternative), and tells the local participant plainly when their connection is weak.
// The page never stops its own video for a weak connection: the others and the recording
// keep the best it can send, and the server decides what each receiver's link carries.
// See docs/protocol.md ("stats", "quality").
"use strict";

// Catalogue keys (i18n.js) for each level's label and the local notice.
const QUALITY_LABELS = { good: "quality.good", weak: "quality.weak", lost: "quality.lost" };
const QUALITY_NOTICES = { weak: "quality.notice_weak", lost: "quality.notice_lost" };

// The level indicator of a tile: three bars, as many lit as the level deserves.
function showQuality(tile, level) {
  if (!tile || !QUALITY_LABELS[level]) return;
  let icon = tile.querySelector(".quality");
  if (!icon) {
    icon = document.createElement("span");
    icon.className = "quality";
    icon.setAttribute("role", "img");
    for (let i = 0; i < 3; i += 1) icon.append(document.createElement("span"));
    tile.append(icon);
  }
  icon.dataset.level = level;
  say(icon, QUALITY_LABELS[level], {}, "aria-label");
  say(icon, QUALITY_LABELS[level], {}, "title");
}

// Our own level: the self tile and the notice.
function showLocalQuality(level) {
  showQuality(document.querySelector("li.tile.self"), level);
  let box = document.getElementById("quality-notice");
  if (!box) {
    box = document.createElement("p");
    box.id = "quality-notice";
    box.className = "quality-notice";
    box.setAttribute("role", "status");
    document.getElementById("status").after(box);
  }
  if (QUALITY_NOTICES[level]) say(box, QUALITY_NOTICES[level]);
  box.hidden = !QUALITY_NOTICES[level];
}

// Cumulative counters since the peer connection started (the server takes differences).
async function collectStats(pc, last) {
  const report = { type: "stats", audio_concealed_samples: 0, audio_total_samples: 0,
    video_frames_decoded: 0, video_frozen_s: 0, packets_lost: 0, packets_received: 0, packets_nacked: 0,
    jitter_s: 0, rtt_s: null, outbound_bps: 0 };
  let bytesSent = 0;
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "inbound-rtp") {
      report.packets_lost += Math.max(0, s.packetsLost || 0);
      report.packets_nacked += s.nackCount || 0;
      report.packets_received += s.packetsReceived || 0;
      report.jitter_s = Math.max(report.jitter_s, s.jitter || 0);
      if (s.kind === "audio") {
        report.audio_concealed_samples += s.concealedSamples || 0;
        report.audio_total_samples += s.totalSamplesReceived || 0;
      } else {
        report.video_frames_decoded += s.framesDecoded || 0;
        report.video_frozen_s += s.totalFreezesDuration || 0;
      }
    } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
      report.rtt_s = s.currentRoundTripTime;
    } else if (s.type === "outbound-rtp") {
      bytesSent += s.bytesSent || 0;
    }
  }
  const now = performance.now();
  if (last.pc === pc && now > last.at) report.outbound_bps = Math.max(0, (bytesSent - last.bytes) * 8000 / (now - last.at));
  Object.assign(last, { pc, at: now, bytes: bytesSent });
  return report;
}

// Report every intervalS seconds while a peer connection is up; getPc returns it.
let qualityTimer = null;
function startQualityReports(intervalS, getPc, send) {
  clearInterval(qualityTimer);
  const last = { pc: null, at: 0, bytes: 0 };
  qualityTimer = setInterval(async () => {
    const pc = getPc();
    if (!pc || pc.connectionState !== "connected") return;
    try {
      send(await collectStats(pc, last));
    } catch (err) { console.warn(err); }
  }, Math.max(1, intervalS || 5) * 1000);
}
