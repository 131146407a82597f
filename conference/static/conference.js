// The conference room client: one WebSocket for signalling, one RTCPeerConnection
// on which the server offers (it fixes the codec, so nothing is re-encoded).
// A room PC opened at /conference/ROOM?venue=NAME&pin=PIN&auto=1 joins by itself
// and rejoins after a network drop; nobody has to touch it.
(function () {
  "use strict";
  const config = window.conferenceConfig;
  const S = config.strings;
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const CONNECT_DEADLINE_MS = 10000;

  const state = {
    room: config.room, venue: "", role: "venue", pin: "",
    ws: null, pc: null, local: null, camera: null, screen: null,
    slotByMid: {}, slots: [], publishMids: null, layout: [], roomEvent: null,
    joined: false, stopped: false, backoff: 1000, errors: [], alerts: [], muted: false,
    chairMuted: false, sharing: false, cameraOn: true, connectedOnce: false,
  };
  window.conference = state;

  function setStatus(key) {
    const el = $("status");
    el.dataset.state = key;
    el.textContent = S["status." + key] || "";
  }

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/signaling/conference`;
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }
  state.send = send;

  async function localMedia() {
    if (state.role === "viewer" || state.local) return state.local;
    const width = parseInt(params.get("width") || "640", 10);
    const height = parseInt(params.get("height") || "480", 10);
    state.local = await navigator.mediaDevices.getUserMedia({
      audio: true, video: { width, height, frameRate: 20 },
    });
    state.camera = state.local.getVideoTracks()[0];
    $("self-view").srcObject = state.local;
    return state.local;
  }

  function slotElement(index) {
    if (index === 0) return $("slot-0");
    let figure = $("slot-" + index);
    if (!figure) {
      figure = document.createElement("figure");
      figure.id = "slot-" + index;
      figure.dataset.empty = "true";
      figure.innerHTML = "<video autoplay playsinline></video><figcaption></figcaption>";
      $("tiles").appendChild(figure);
    }
    return figure;
  }

  function connect() {
    if (state.stopped) return;
    setStatus(state.connectedOnce ? "reconnecting" : "connecting");
    const ws = new WebSocket(wsUrl());
    state.ws = ws;
    ws.onopen = () => {
      const join = { type: "join", room: state.room, venue: state.venue, role: state.role };
      if (state.pin) join.pin = state.pin;
      send(join);
    };
    ws.onmessage = (event) => handle(JSON.parse(event.data)).catch((err) => {
      state.errors.push({ code: "client", message: String(err) });
    });
    ws.onclose = () => {
      if (state.ws !== ws) return;
      teardownPeer();
      state.joined = false;
      if (!state.stopped) {
        setStatus("reconnecting");
        setTimeout(connect, state.backoff);
        state.backoff = Math.min(state.backoff * 2, 10000);
      }
    };
  }

  function teardownPeer() {
    if (state.pc) state.pc.close();
    state.pc = null;
  }

  async function handle(msg) {
    switch (msg.type) {
      case "joined":
        state.joined = true;
        state.backoff = 1000;
        state.room = msg.room;
        for (let i = 0; i < msg.slots; i++) slotElement(i);
        break;
      case "offer":
        await answer(msg);
        break;
      case "layout":
        state.layout = msg.slots;
        for (const slot of msg.slots) {
          const figure = slotElement(slot.index);
          figure.dataset.venue = slot.venue || "";
          figure.dataset.empty = slot.venue || slot.index === 0 ? "false" : "true";
          figure.querySelector("figcaption").textContent = slot.venue
            ? slot.venue + (slot.room !== state.room ? ` (${slot.room})` : "") : "";
        }
        break;
      case "room":
        state.roomEvent = msg;
        renderRoom(msg);
        break;
      case "muted":
        state.chairMuted = msg.muted;
        $("muted-note").hidden = !msg.muted;
        applyMute();
        break;
      case "moved":
        state.room = msg.room;
        break;
      case "removed":
        if (msg.reason === "removed_by_chair" || msg.reason === "replaced") {
          state.stopped = true;
          setStatus("removed");
        }
        break;
      case "alert":
        state.alerts.push(msg);
        $("alert").hidden = false;
        $("alert").textContent = `${S.alert}: ${msg.headline} ${msg.description}`;
        break;
      case "error":
        state.errors.push(msg);
        break;
    }
  }

  async function answer(offer) {
    teardownPeer();
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    state.slotByMid = {};
    for (const slot of offer.slots) {
      state.slotByMid[slot.audio] = slot.index;
      state.slotByMid[slot.video] = slot.index;
    }
    state.publishMids = offer.publish;
    pc.ontrack = (event) => {
      const index = state.slotByMid[event.transceiver.mid];
      if (index === undefined) return;
      const video = slotElement(index).querySelector("video");
      if (!(video.srcObject instanceof MediaStream)) video.srcObject = new MediaStream();
      video.srcObject.addTrack(event.track);
    };
    const rejoin = () => {
      if (state.pc === pc && state.ws) state.ws.close();  // rejoin from scratch
    };
    // A path that never comes up (a lost answer, ICE stuck checking) would otherwise
    // leave the room PC dark until the browser gives up, about half a minute later.
    const watchdog = setTimeout(() => {
      if (pc.connectionState !== "connected") rejoin();
    }, CONNECT_DEADLINE_MS);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") {
        clearTimeout(watchdog);
        state.connectedOnce = true;
        setStatus("connected");
      } else if (pc.connectionState === "failed") {
        clearTimeout(watchdog);
        rejoin();
      }
    };
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    if (offer.publish) {
      const local = await localMedia();
      for (const transceiver of pc.getTransceivers()) {
        if (transceiver.mid === offer.publish.audio) {
          transceiver.direction = "sendonly";
          await transceiver.sender.replaceTrack(local.getAudioTracks()[0]);
        } else if (transceiver.mid === offer.publish.video) {
          transceiver.direction = "sendonly";
          await transceiver.sender.replaceTrack(state.screen || state.camera);
        }
      }
      applyMute();
    }
    await pc.setLocalDescription(await pc.createAnswer());
    // The server does not trickle: send the answer with every candidate in it.
    if (pc.iceGatheringState !== "complete") {
      await new Promise((resolve) => {
        const done = () => pc.iceGatheringState === "complete" && resolve();
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, 3000);
      });
    }
    send({ type: "answer", sdp: pc.localDescription.sdp });
  }

  function videoSender() {
    if (!state.pc || !state.publishMids) return null;
    const t = state.pc.getTransceivers().find((x) => x.mid === state.publishMids.video);
    return t ? t.sender : null;
  }

  function applyMute() {
    if (!state.local) return;
    for (const track of state.local.getAudioTracks()) track.enabled = !(state.muted || state.chairMuted);
    if (state.camera) state.camera.enabled = state.cameraOn;
    send({ type: "mute", audio: !(state.muted || state.chairMuted), video: state.cameraOn });
  }

  function isChair() { return state.role === "chair"; }

  function renderRoom(msg) {
    $("chair-panel").hidden = !isChair();
    $("push-controls").hidden = !(isChair() && config.commandRoom && state.room === config.room);
    $("lock-btn").textContent = msg.locked ? S.unlock : S.lock;
    $("record-btn").textContent = msg.recording ? S.stop_record : S.record;
    // Everyone in the room is told that it is being recorded, not only the chair.
    $("recording-note").hidden = !msg.recording;
    const list = $("venues");
    list.textContent = "";
    for (const v of msg.venues) {
      const li = document.createElement("li");
      li.dataset.venue = v.venue;
      const label = `${v.venue} · ${S["role." + v.role]}` + (v.venue === msg.main ? ` · ${S.main}` : "")
        + (v.muted ? " · 🔇" : "") + (v.guest_from ? ` (${v.guest_from})` : "");
      li.append(label);
      if (isChair() && v.venue !== state.venue) {
        const button = (text, cls, message) => {
          const b = document.createElement("button");
          b.type = "button"; b.textContent = text; b.className = cls;
          b.onclick = () => send(message);
          li.append(" ", b);
        };
        button(v.muted ? S.unmute_venue : S.mute_venue, "mute-venue",
          { type: "mute_venue", venue: v.venue, muted: !v.muted });
        button(S.set_main, "set-main", { type: "set_main", venue: v.venue });
        button(S.remove, "remove-venue", { type: "remove_venue", venue: v.venue });
        if (v.guest_from) button(S.return, "return-venue", { type: "return_venue", venue: v.venue });
      }
      list.append(li);
    }
  }

  async function toggleShare() {
    const sender = videoSender();
    if (!sender) return;
    if (state.screen) {
      state.screen.stop();
      state.screen = null;
      await sender.replaceTrack(state.camera);
    } else {
      const display = await navigator.mediaDevices.getDisplayMedia({ video: true });
      state.screen = display.getVideoTracks()[0];
      state.screen.onended = () => { if (state.screen) toggleShare(); };
      await sender.replaceTrack(state.screen);
    }
    state.sharing = !!state.screen;
    $("share-btn").textContent = state.sharing ? S.stop_share : S.share;
    send({ type: "share", on: state.sharing });
  }

  // What a technician (or a failing test) needs to see when a room PC stays dark.
  state.describe = function () {
    const pc = state.pc;
    return {
      status: $("status").dataset.state || "",
      ws: state.ws ? state.ws.readyState : null,
      joined: state.joined,
      connection: pc ? pc.connectionState : null,
      ice: pc ? pc.iceConnectionState : null,
      gathering: pc ? pc.iceGatheringState : null,
      signaling: pc ? pc.signalingState : null,
      layout: state.layout,
      errors: state.errors,
    };
  };

  // For people and tests alike: what each slot receives, from the browser's own stats.
  state.slotStats = async function () {
    const result = {};
    if (!state.pc) return result;
    const report = await state.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || state.slotByMid[s.mid] === undefined) return;
      const index = state.slotByMid[s.mid];
      const slot = result[index] || (result[index] = {
        venue: (state.layout[index] || {}).venue || null,
        framesDecoded: 0, audioPackets: 0, audioEnergy: 0, frameWidth: 0,
      });
      if (s.kind === "video") {
        slot.framesDecoded = s.framesDecoded || 0;
        slot.frameWidth = s.frameWidth || 0;
      } else {
        slot.audioPackets = s.packetsReceived || 0;
        slot.audioEnergy = s.totalAudioEnergy || 0;
      }
    });
    return result;
  };

  function start(venue, pin, role) {
    state.venue = venue; state.pin = pin; state.role = role;
    $("join-form").hidden = true;
    $("call").hidden = false;
    connect();
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("venue").value.trim(), $("pin").value.trim(), $("role").value);
  });
  $("mute-btn").onclick = () => {
    state.muted = !state.muted;
    $("mute-btn").textContent = state.muted ? S.unmute : S.mute;
    applyMute();
  };
  $("camera-btn").onclick = () => {
    state.cameraOn = !state.cameraOn;
    $("camera-btn").textContent = state.cameraOn ? S.camera_off : S.camera_on;
    applyMute();
  };
  $("share-btn").onclick = () => toggleShare().catch((err) => state.errors.push({ code: "share", message: String(err) }));
  $("leave-btn").onclick = () => {
    state.stopped = true;
    send({ type: "leave" });
    teardownPeer();
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    state.local = null;
    $("call").hidden = true;
    $("join-form").hidden = false;
  };
  $("lock-btn").onclick = () => send({ type: "lock_room", locked: !(state.roomEvent && state.roomEvent.locked) });
  $("record-btn").onclick = () => send({ type: "recording", on: !(state.roomEvent && state.roomEvent.recording) });
  $("push-btn").onclick = () => send({ type: "push_picture", room: $("push-room").value.trim(), on: true });
  $("stop-push-btn").onclick = () => send({ type: "push_picture", room: $("push-room").value.trim(), on: false });
  $("pull-btn").onclick = () => send({ type: "pull_venue", room: $("pull-room").value.trim(), venue: $("pull-venue").value.trim() });

  if (params.get("venue")) $("venue").value = params.get("venue");
  if (params.get("pin")) $("pin").value = params.get("pin");
  if (params.get("role")) $("role").value = params.get("role");
  if (params.get("auto") === "1" && params.get("venue")) {
    start(params.get("venue"), params.get("pin") || "", params.get("role") || "venue");
  }
})();
