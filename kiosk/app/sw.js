// Kiosk Service Worker: the app, the feed and the media keep working without the server.
// App shell and feed: network first, cache when the server is gone (so changes are picked
// up when it is back). Media: cache first, with Range answered from the cached copy so a
// clip stays seekable offline. News clips (HLS from the VOD catalogue): kept under their
// key, whatever signature the link carries, since signed links expire and the kiosk
// cannot get a new one offline.
const SHELL_CACHE = "kiosk-shell-v2";
const MEDIA_CACHE = "kiosk-media-v1";
const NEWS_CACHE = "kiosk-news-v1";
const SHELL = ["/kiosk/", "/kiosk/app.js", "/kiosk/app.css", "/kiosk/manifest.webmanifest"];
const PLAYER = "/kiosk/hls.min.js"; // optional: the app falls back to native HLS without it
const SCREENSHOTS = "/kiosk/html2canvas.min.js"; // optional: heartbeats go without a picture
const NEWS_PATH = /^\/kiosk\/vod\/s\/[^/]+\/[^/]+\/([A-Za-z0-9_.-]+)\/(.+)$/;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE)
    .then((cache) => cache.addAll(SHELL)
      .then(() => Promise.all([PLAYER, SCREENSHOTS].map((url) => cache.add(url).catch(() => {})))))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request.url.split("?")[0], response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(request.url.split("?")[0]);
    if (cached) return cached;
    throw error;
  }
}

function rangeOf(header, size) {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  let start = match[1] === "" ? null : Number(match[1]);
  let end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start === null) { start = Math.max(0, size - Number(match[2])); end = size - 1; }
  return start <= end && start < size ? [start, end] : null;
}

async function fromMediaCache(request) {
  const cache = await caches.open(MEDIA_CACHE);
  const cached = await cache.match(request.url);
  if (!cached) return fetch(request);
  const range = request.headers.get("Range");
  if (!range) return cached;
  const blob = await cached.blob();
  const type = cached.headers.get("Content-Type") || "application/octet-stream";
  const span = rangeOf(range, blob.size);
  if (!span) {
    return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${blob.size}` } });
  }
  const [start, end] = span;
  return new Response(blob.slice(start, end + 1, type), {
    status: 206,
    headers: {
      "Content-Type": type, "Accept-Ranges": "bytes", "Content-Length": String(end - start + 1),
      "Content-Range": `bytes ${start}-${end}/${blob.size}`,
    },
  });
}

// ---- news clips

// "/kiosk/vod/s/<expires>/<sig>/<key>/<path>" is kept as "/kiosk/vod/<key>/<path>".
function newsEntry(href) {
  const match = NEWS_PATH.exec(new URL(href, self.location.origin).pathname);
  return match ? { key: match[1], path: match[2], stable: `${self.location.origin}/kiosk/vod/${match[1]}/${match[2]}` } : null;
}

// A fresh Response, so the player resolves relative URIs against the URL it asked for
// (a cached response would carry the stable URL, which has no signature).
async function answer(cached, text) {
  const body = text !== undefined ? text : await cached.blob();
  return new Response(body, { status: 200, headers: { "Content-Type": cached.headers.get("Content-Type") || "" } });
}

// Offline, the master playlist lists only the renditions kept whole, so the player
// cannot pick one whose segments are missing.
function keptVariants(master, kept) {
  const lines = master.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i += 1) {
    if (lines[i].startsWith("#EXT-X-STREAM-INF")) {
      if (kept.includes((lines[i + 1] || "").trim())) out.push(lines[i], lines[i + 1]);
      i += 1;
    } else out.push(lines[i]);
  }
  return out.join("\n");
}

async function fromNews(request, entry) {
  const cache = await caches.open(NEWS_CACHE);
  if (entry.path.endsWith(".m3u8")) {
    try {
      const response = await fetch(request);
      if (response.ok) return response;
    } catch (error) { /* the server is gone: the kept copy below */ }
    const cached = await cache.match(entry.stable);
    if (!cached) return new Response("not kept offline", { status: 504 });
    if (entry.path !== "master.m3u8") return answer(cached);
    const kept = await cache.match(`${self.location.origin}/kiosk/vod/${entry.key}/.kept.json`);
    const variants = kept ? (await kept.json()).variants : [];
    return answer(cached, keptVariants(await cached.text(), variants));
  }
  const cached = await cache.match(entry.stable);
  if (cached) return answer(cached);
  return fetch(request);
}

function mediaPlaylistUris(text) {
  return text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
}

// Keep a clip for offline play: its master playlist, and its lowest rendition whole
// (street links are slow and kiosk storage small; the lowest plays everywhere).
async function keepNews(cache, key, signed) {
  const base = new URL(signed, self.location.origin);
  const fetchKeep = async (url) => {
    const entry = newsEntry(url.href);
    const kept = entry && await cache.match(entry.stable);
    if (kept && !entry.path.endsWith(".m3u8")) return kept;
    const response = await fetch(url.href);
    if (!response.ok) throw new Error(`${response.status} ${url.pathname}`);
    await cache.put(entry.stable, response.clone());
    return response;
  };
  const master = await (await fetchKeep(base)).text();
  const lines = master.split("\n").map((line) => line.trim());
  let lowest = null;
  for (let i = 0; i < lines.length; i += 1) {
    const match = /^#EXT-X-STREAM-INF:.*?\bBANDWIDTH=(\d+)/.exec(lines[i]);
    if (match && (!lowest || Number(match[1]) < lowest.bandwidth)) lowest = { bandwidth: Number(match[1]), uri: lines[i + 1] };
  }
  if (!lowest) return; // not a master playlist: nothing more to keep
  const variantUrl = new URL(lowest.uri, base);
  const playlist = await (await fetchKeep(variantUrl)).text();
  for (const uri of mediaPlaylistUris(playlist)) await fetchKeep(new URL(uri, variantUrl));
  await cache.put(`${self.location.origin}/kiosk/vod/${key}/.kept.json`,
    new Response(JSON.stringify({ variants: [lowest.uri] }), { headers: { "Content-Type": "application/json" } }));
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || event.request.method !== "GET") return;
  const news = newsEntry(url.href);
  if (news) {
    event.respondWith(fromNews(event.request, news));
  } else if (url.pathname.startsWith("/kiosk/media/")) {
    event.respondWith(fromMediaCache(event.request));
  } else if (SHELL.includes(url.pathname) || url.pathname === PLAYER || url.pathname === SCREENSHOTS
             || url.pathname === "/kiosk/api/feed") {
    event.respondWith(networkFirst(event.request));
  }
});

// The app sends the media its feed names; each is fetched whole and kept, the rest dropped.
self.addEventListener("message", (event) => {
  if (!event.data || event.data.type !== "cache-media") return;
  event.waitUntil((async () => {
    const cache = await caches.open(MEDIA_CACHE);
    const wanted = new Set(event.data.urls.map((path) => new URL(path, self.location.origin).href));
    for (const request of await cache.keys()) {
      if (!wanted.has(request.url)) await cache.delete(request);
    }
    let cached = 0;
    for (const url of wanted) {
      if (await cache.match(url)) { cached += 1; continue; }
      try {
        const response = await fetch(url);
        if (response.ok) { await cache.put(url, response); cached += 1; }
      } catch (error) { /* offline: tried again at the next sync */ }
    }
    event.source.postMessage({ type: "media-cached", cached, wanted: wanted.size });

    const news = await caches.open(NEWS_CACHE);
    // Clips no longer in the feed are dropped; those without a fresh link (offline) stay.
    const keys = new Set(event.data.newsKeys || []);
    for (const request of await news.keys()) {
      const match = /^\/kiosk\/vod\/([^/]+)\//.exec(new URL(request.url).pathname);
      if (!match || !keys.has(match[1])) await news.delete(request);
    }
    const kept = new Set();
    for (const clip of event.data.news || []) {
      try { await keepNews(news, clip.key, clip.url); kept.add(clip.key); } catch (error) { /* again at the next sync */ }
    }
    for (const key of keys) {
      if (await news.match(`${self.location.origin}/kiosk/vod/${key}/.kept.json`)) kept.add(key);
    }
    event.source.postMessage({ type: "news-cached", cached: kept.size, wanted: keys.size });
  })());
});
