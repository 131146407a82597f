// The street kiosk app: pairing, the feed, attract loop, categories, zh/en, takeover alerts.
// Every text from the server goes into the page with textContent, never as HTML.
"use strict";
(function () {
  const APP_VERSION = "1";
  const TEXT = {
    zh: { brand: "城市信息亭", all: "全部", lang: "English", steps: "办理步骤", documents: "所需材料",
          offline: "离线运行", emergency: "紧急通知", nothing: "暂无内容", back: "返回" },
    en: { brand: "City information", all: "All", lang: "中文", steps: "Steps", documents: "Required documents",
          offline: "Offline", emergency: "EMERGENCY", nothing: "Nothing to show", back: "Back" },
  };
  const params = new URLSearchParams(location.search);
  const IDLE_MS = Number(params.get("idle") || 60) * 1000; // back to the attract loop
  const SLIDE_MS = Number(params.get("slide") || 8) * 1000;
  // A small picture of the screen for the fleet board, with a heartbeat at most this often.
  const SHOT_MS = Number(params.get("shot") || 180) * 1000;
  const SHOT_WIDTH = 320; // pixels: a thumbnail, a few KiB as JPEG
  const SHOT_MAX_CHARS = 80000; // the server takes at most 64 KiB of image
  const started = Date.now();
  const $ = (id) => document.getElementById(id);
  const state = {
    token: localStorage.getItem("kiosk.token"),
    lang: localStorage.getItem("kiosk.lang") || "zh",
    feed: JSON.parse(localStorage.getItem("kiosk.feed") || "null"),
    etag: localStorage.getItem("kiosk.etag") || "",
    category: null, opened: null, slide: 0, lastTouch: 0,
    lastRendered: null, rendering: true, pushed: new Map(), cleared: new Set(),
    plays: {}, backoff: 1000, heartbeatMs: 30000, mediaCached: 0, online: navigator.onLine,
    shotAt: 0,
  };

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }
  const pick = (text) => (text && (text[state.lang] || text.zh)) || "";
  const count = (id, action) => { const key = `${id}:${action}`; state.plays[key] = (state.plays[key] || 0) + 1; };

  function activeItems() {
    if (!state.feed) return [];
    const now = Date.now();
    return state.feed.items.filter((item) =>
      item.show.some(([from, until]) => Date.parse(from) <= now && now < Date.parse(until)));
  }

  function activeAlerts() {
    const now = Date.now();
    const all = new Map();
    for (const alert of (state.feed && state.feed.alerts) || []) all.set(alert.id, alert);
    for (const [id, alert] of state.pushed) all.set(id, alert);
    return [...all.values()].filter((a) => !state.cleared.has(a.id) && Date.parse(a.starts) <= now + 5000
      && (!a.expires || now < Date.parse(a.expires)));
  }

  // ---- rendering

  function renderItem(item, full) {
    const box = el("article", null, { class: "item", "data-item": String(item.id), "data-kind": item.kind });
    box.append(el("h2", pick(item.title)));
    if (item.body && pick(item.body)) box.append(el("p", pick(item.body)));
    if (item.kind === "guide") {
      box.append(el("h3", TEXT[state.lang].steps));
      const steps = el("ol");
      for (const step of item.steps || []) steps.append(el("li", pick(step)));
      box.append(steps);
      if ((item.documents || []).length) {
        box.append(el("h3", TEXT[state.lang].documents));
        const docs = el("ul");
        for (const doc of item.documents) docs.append(el("li", pick(doc)));
        box.append(docs);
      }
    } else if (item.media && item.kind === "image") {
      box.append(el("img", null, { src: item.media.url, alt: pick(item.title) }));
    } else if (item.media && item.kind === "video") {
      const video = el("video", null, { src: item.media.url, playsinline: "", preload: "auto" });
      video.muted = true; video.loop = true; video.autoplay = true;
      if (full) video.controls = true;
      box.append(video);
    } else if (item.kind === "news" && item.stream) {
      const video = el("video", null, { playsinline: "", preload: "auto", "data-news": newsKey(item) });
      video.muted = !full; video.autoplay = true;
      if (full) video.controls = true;
      box.append(video);
      playNews(video, newsKey(item));
    } else if (item.kind === "portal" && item.portal) {
      box.append(el("p", item.portal.text || item.portal.url));
    }
    return box;
  }

  // ---- news clips (HLS from the VOD catalogue)

  const newsKey = (item) => item.stream.split("/").pop();
  // Any expiry and signature: the Service Worker answers from its copy by the key alone.
  const offlineNewsUrl = (key) => `/kiosk/vod/s/0/offline/${key}/master.m3u8`;

  // A fresh signed link from the server, or the cached copy's path when it is gone.
  async function newsUrl(key) {
    try {
      const response = await fetch(`/kiosk/api/news/${encodeURIComponent(key)}`, { headers: auth(), cache: "no-store" });
      if (response.ok) return (await response.json()).url;
    } catch (error) { /* offline */ }
    return offlineNewsUrl(key);
  }

  async function playNews(video, key) {
    const url = await newsUrl(key);
    if (!video.isConnected) return;
    if (window.Hls && window.Hls.isSupported()) {
      // No worker: the page's CSP allows scripts from 'self' only, not blob: workers.
      const hls = new window.Hls({ enableWorker: false, startLevel: 0, capLevelToPlayerSize: true });
      hls.loadSource(url);
      hls.attachMedia(video);
      video.hls = hls;
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    }
    video.play().catch(() => {});
  }

  // A replaced page must not leave players fetching segments in the background.
  function clearStage(stage, ...nodes) {
    for (const video of stage.querySelectorAll("video")) { if (video.hls) video.hls.destroy(); }
    stage.replaceChildren(...nodes);
  }

  function renderNav() {
    const nav = $("categories");
    nav.replaceChildren();
    const categories = [...new Set(activeItems().map((item) => item.category))].sort();
    const all = el("button", TEXT[state.lang].all, { type: "button", "data-category": "" });
    all.setAttribute("aria-pressed", String(state.category === ""));
    nav.append(all);
    for (const category of categories) {
      const button = el("button", category, { type: "button", "data-category": category });
      button.setAttribute("aria-pressed", String(state.category === category));
      nav.append(button);
    }
  }

  function render() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    $("brand").textContent = TEXT[state.lang].brand;
    $("lang").textContent = TEXT[state.lang].lang;
    $("offline").textContent = TEXT[state.lang].offline;
    $("offline").hidden = state.online;
    $("alert-label").textContent = TEXT[state.lang].emergency;
    renderNav();
    const stage = $("stage");
    const items = activeItems();
    stage.dataset.mode = state.category === null ? "attract" : "browse";
    const current = stage.querySelector("article");
    const same = (id, opened) => current && current.dataset.item === String(id)
      && stage.dataset.lang === state.lang && stage.dataset.opened === String(opened);
    if (!items.length) {
      clearStage(stage, el("p", TEXT[state.lang].nothing, { class: "empty" }));
    } else if (state.opened !== null && items.some((i) => i.id === state.opened)) {
      // An opened clip keeps playing through the periodic re-render.
      if (!same(state.opened, true)) {
        const back = el("button", TEXT[state.lang].back, { type: "button", "data-back": "" });
        clearStage(stage, back, renderItem(items.find((i) => i.id === state.opened), true));
      }
    } else if (state.category === null) {
      const item = items[state.slide % items.length];
      if (!same(item.id, false)) {
        clearStage(stage, renderItem(item, false));
        count(item.id, "shown");
      }
    } else {
      const tiles = el("div", null, { class: "tiles" });
      for (const item of items.filter((i) => !state.category || i.category === state.category)) {
        const tile = el("button", pick(item.title), { type: "button", "data-open": String(item.id) });
        tiles.append(tile);
      }
      clearStage(stage, tiles);
    }
    stage.dataset.lang = state.lang;
    stage.dataset.opened = String(state.opened !== null && items.some((i) => i.id === state.opened));
    renderAlert();
  }

  function renderAlert() {
    const alerts = activeAlerts();
    const box = $("alert");
    if (!alerts.length) { box.hidden = true; box.dataset.alert = ""; return; }
    const alert = alerts[alerts.length - 1];
    $("alert-headline").textContent = alert.headline;
    $("alert-text").textContent = alert.text || "";
    box.dataset.alert = String(alert.id);
    box.hidden = false;
  }

  // ---- touch, language, idle

  document.addEventListener("click", (event) => {
    state.lastTouch = Date.now();
    const target = event.target.closest("button");
    if (!target) { if (state.category === null) { state.category = ""; render(); } return; }
    if (target.id === "lang") {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem("kiosk.lang", state.lang);
    } else if (target.dataset.category !== undefined) {
      state.category = target.dataset.category; state.opened = null;
    } else if (target.dataset.open) {
      state.opened = Number(target.dataset.open); count(state.opened, "opened");
    } else if (target.dataset.back !== undefined) {
      state.opened = null;
    }
    render();
  });

  setInterval(() => {
    if (state.category !== null && Date.now() - state.lastTouch > IDLE_MS) {
      state.category = null; state.opened = null;
    }
    if (state.category === null) state.slide += 1;
    render();
  }, SLIDE_MS);
  // Alerts expire and scheduled items start by the kiosk's clock, even offline.
  setInterval(renderAlert, 1000);

  // "Rendered" means a frame was painted: a frozen page stops updating this.
  function frame() {
    if (state.rendering) state.lastRendered = new Date();
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);

  // ---- server: pairing, feed, heartbeat, live pushes

  const auth = () => ({ Authorization: `Bearer ${state.token}` });

  async function pair() {
    $("pairing").hidden = false;
    let pairing = null;
    for (;;) {
      try {
        if (!pairing || Date.parse(pairing.expires_at) < Date.now()) {
          const response = await fetch("/kiosk/api/pairings", { method: "POST" });
          pairing = await response.json();
          $("pairing-code").textContent = pairing.code;
        }
        const response = await fetch("/kiosk/api/pairings/claim", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ claim: pairing.claim }),
        });
        if (response.status === 200) {
          state.token = (await response.json()).token;
          localStorage.setItem("kiosk.token", state.token);
          $("pairing").hidden = true;
          return;
        }
        if (response.status !== 202) pairing = null;
      } catch (error) { /* server unreachable: keep showing the code */ }
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
  }

  function unpaired() {
    localStorage.removeItem("kiosk.token");
    localStorage.removeItem("kiosk.feed");
    state.token = null; state.feed = null;
    location.reload();
  }

  async function sync() {
    try {
      const headers = auth();
      if (state.etag && state.feed) headers["If-None-Match"] = state.etag;
      const response = await fetch("/kiosk/api/feed", { headers, cache: "no-store" });
      if (response.status === 401) return unpaired();
      if (response.status === 200) {
        state.feed = await response.json();
        state.etag = response.headers.get("ETag") || "";
        localStorage.setItem("kiosk.feed", JSON.stringify(state.feed));
        localStorage.setItem("kiosk.etag", state.etag);
        cacheMedia();
      } else if (response.status !== 304) throw new Error(String(response.status));
      state.heartbeatMs = ((state.feed && state.feed.kiosk && state.feed.kiosk.heartbeat_seconds) || 30) * 1000;
      state.online = true; state.backoff = 1000;
      render();
      return true;
    } catch (error) {
      state.online = false;
      render();
      return false;
    }
  }

  // The Service Worker keeps the feed's media and news clips (playlists and segments).
  async function cacheMedia() {
    if (!navigator.serviceWorker || !navigator.serviceWorker.controller || !state.feed) return;
    const urls = state.feed.items.filter((i) => i.media).map((i) => i.media.url);
    // Every clip of the feed is kept; those with a fresh link (online) are brought up to date.
    const newsKeys = state.feed.items.filter((i) => i.kind === "news" && i.stream).map(newsKey);
    const news = [];
    for (const key of newsKeys) {
      const url = await newsUrl(key);
      if (url !== offlineNewsUrl(key)) news.push({ key, url });
    }
    const worker = navigator.serviceWorker.controller;
    if (worker) worker.postMessage({ type: "cache-media", urls, news, newsKeys });
  }

  // ---- the fleet board's screenshot

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = el("script", null, { src });
      script.onload = resolve; script.onerror = reject;
      document.head.append(script);
    });
  }

  // What the screen shows (alert, pairing code, slide, the current frame of a clip), drawn by
  // html2canvas from the page itself, downscaled to a JPEG thumbnail; "" when none is due or
  // the library is missing (offline after a reload): the heartbeat goes without one.
  async function screenshot() {
    if (Date.now() - state.shotAt < SHOT_MS) return "";
    state.shotAt = Date.now();
    try {
      // Loaded on first use: most of the time the kiosk never parses it.
      if (!window.html2canvas) await loadScript("/kiosk/html2canvas.min.js");
      const width = window.innerWidth, height = window.innerHeight;
      const canvas = await window.html2canvas(document.body, {
        scale: Math.min(1, SHOT_WIDTH / width), width, height, windowWidth: width, windowHeight: height,
        backgroundColor: "#000000", logging: false,
      });
      for (const quality of [0.6, 0.4, 0.25]) {
        const url = canvas.toDataURL("image/jpeg", quality);
        if (url.length <= SHOT_MAX_CHARS) return url;
      }
    } catch (error) { /* no picture this time */ }
    return "";
  }

  async function heartbeat() {
    const plays = state.plays;
    state.plays = {};
    const shot = await screenshot();
    try {
      const response = await fetch("/kiosk/api/heartbeat", {
        method: "POST", headers: { ...auth(), "Content-Type": "application/json" },
        body: JSON.stringify({
          app_version: APP_VERSION, content_version: (state.feed && state.feed.version) || "",
          uptime_seconds: Math.round((Date.now() - started) / 1000),
          last_rendered_at: state.lastRendered ? state.lastRendered.toISOString() : null,
          cache_state: { media_cached: state.mediaCached, news_cached: state.newsCached || 0, items: state.feed ? state.feed.items.length : 0,
                         service_worker: Boolean(navigator.serviceWorker && navigator.serviceWorker.controller) },
          plays,
          ...(shot ? { screenshot: shot } : {}),
        }),
      });
      if (response.status === 401) return unpaired();
      if (!response.ok) throw new Error(String(response.status));
      state.online = true;
      if (shot) document.body.dataset.screenshotSent = String(shot.length);
    } catch (error) {
      for (const [key, value] of Object.entries(plays)) state.plays[key] = (state.plays[key] || 0) + value;
      if (shot) state.shotAt = 0; // the picture did not arrive: take a new one next time
      state.online = false;
    }
    // Shown at once, not at the next slide: an opened page may stay up for minutes.
    $("offline").hidden = state.online;
  }

  // Back-off when the server cannot be reached: 1 s doubling to 5 minutes.
  async function syncLoop() {
    const ok = await sync();
    if (!ok) state.backoff = Math.min(state.backoff * 2, 300000);
    setTimeout(syncLoop, ok ? 300000 : state.backoff);
  }

  async function heartbeatLoop() {
    await heartbeat();
    setTimeout(heartbeatLoop, state.heartbeatMs);
  }

  function live() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/kiosk/api/live`);
    socket.onopen = () => socket.send(JSON.stringify({ token: state.token }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "hello") { state.backoff = 1000; sync(); }
      if (message.type === "alert") { state.cleared.delete(message.alert.id); state.pushed.set(message.alert.id, message.alert); renderAlert(); }
      if (message.type === "alert_cleared") { state.cleared.add(message.alert.id); state.pushed.delete(message.alert.id); renderAlert(); }
      if (message.type === "reload") location.reload();
      if (message.type === "content") sync();
    };
    socket.onclose = (event) => {
      if (event.code === 4401) return unpaired();
      setTimeout(live, Math.min(state.backoff, 30000));
    };
  }

  if (navigator.serviceWorker) {
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data && event.data.type === "media-cached") {
        state.mediaCached = event.data.cached;
        document.body.dataset.mediaCached = `${event.data.cached}/${event.data.wanted}`;
      }
      if (event.data && event.data.type === "news-cached") {
        state.newsCached = event.data.cached;
        document.body.dataset.newsCached = `${event.data.cached}/${event.data.wanted}`;
      }
    });
    navigator.serviceWorker.addEventListener("controllerchange", cacheMedia);
  }

  window.kioskApp = {
    state,
    // For tests and the fleet board's "stale": stop counting frames as a hung renderer would.
    stopRendering() { state.rendering = false; },
  };

  async function start() {
    if (navigator.serviceWorker) {
      navigator.serviceWorker.register("/kiosk/sw.js", { scope: "/kiosk/" }).catch(() => {});
    }
    render();
    if (!state.token) await pair();
    await syncLoop();
    heartbeatLoop();
    live();
  }
  start();
})();
