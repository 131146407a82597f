// The kiosk console page: forms become JSON API calls (window.unicomm.api adds CSRF).
(function () {
  const status = document.getElementById("kiosk-status");
  const error = document.getElementById("kiosk-error");
  const list = (text) => (text || "").split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
  const lines = (text) => (text || "").split("\n").map((s) => s.trim()).filter(Boolean);
  // "中文 | English" a line, so editing a guide keeps both languages of each step.
  const bilingual = (text) => lines(text).map((line) => {
    const [zh, ...en] = line.split("|");
    return { zh: zh.trim(), en: en.join("|").trim() };
  });
  const unbilingual = (entries) => (entries || []).map((e) => (e.en ? `${e.zh} | ${e.en}` : e.zh)).join("\n");
  // datetime-local shows the browser's local time; the API speaks UTC.
  const localInput = (iso) => {
    if (!iso) return "";
    const when = new Date(iso);
    return new Date(when.getTime() - when.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  };
  const editing = new Map(); // form -> the record being edited
  const isoOrNull = (value) => (value ? new Date(value).toISOString() : null);

  async function upload(file) {
    const response = await fetch("/api/kiosk/media?name=" + encodeURIComponent(file.name), {
      method: "POST", body: file, credentials: "same-origin",
      headers: { "Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": window.unicomm.csrfToken },
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data.id;
  }

  const shapes = {
    alert: async (f) => ({ headline: f.headline.value, text: f.text.value, groups: list(f.groups.value),
      expires_minutes: f.expires_minutes.value ? Number(f.expires_minutes.value) : null }),
    approve: async (f) => ({ code: f.code.value, name: f.name.value, group: f.group.value || null }),
    group: async (f) => ({ code: f.code.value, name: f.name.value, district: f.district.value, street: f.street.value }),
    playlist: async (f) => {
      const rule = { weekdays: list(f.weekdays.value).map(Number), dayparts: list(f.dayparts.value),
        date_from: f.date_from.value || null, date_until: f.date_until.value || null };
      const scheduled = rule.weekdays.length || rule.dayparts.length || rule.date_from || rule.date_until;
      if (!rule.weekdays.length) delete rule.weekdays;
      // The form shows one rule and the groups; an edit keeps the rest as they were.
      const old = editing.get(f) || { rules: [], target: {} };
      return { name: f.name.value, item_ids: list(f.item_ids.value).map(Number),
        rules: [...(scheduled ? [rule] : []), ...old.rules.slice(1)],
        groups: list(f.groups.value), districts: old.target.districts || [], streets: old.target.streets || [],
        priority: Number(f.priority.value || 0) };
    },
    item: async (f) => {
      const item = { kind: f.kind.value, category: f.category.value, title_zh: f.title_zh.value,
        title_en: f.title_en.value, body_zh: f.body_zh.value, body_en: f.body_en.value,
        steps: bilingual(f.steps.value), documents: bilingual(f.documents.value),
        vod_key: f.vod_key.value, portal_url: f.portal_url.value,
        valid_from: isoOrNull(f.valid_from.value), valid_until: isoOrNull(f.valid_until.value) };
      const old = editing.get(f);
      if (f.file.files.length) item.media_id = await upload(f.file.files[0]);
      else if (old && old.details.media_id) item.media_id = old.details.media_id;
      return item;
    },
  };

  // Edit: the record goes back into its form, which then saves with PUT.
  const fill = {
    item: (f, r) => {
      f.kind.value = r.kind; f.category.value = r.category;
      f.title_zh.value = r.title_zh; f.title_en.value = r.title_en;
      f.body_zh.value = r.body_zh; f.body_en.value = r.body_en;
      f.steps.value = unbilingual(r.details.steps); f.documents.value = unbilingual(r.details.documents);
      f.vod_key.value = r.details.vod_key || ""; f.portal_url.value = r.details.portal_url || "";
      f.valid_from.value = localInput(r.valid_from); f.valid_until.value = localInput(r.valid_until);
    },
    playlist: (f, r) => {
      const rule = r.rules[0] || {};
      f.name.value = r.name; f.item_ids.value = r.item_ids.join(", ");
      f.weekdays.value = (rule.weekdays || []).join(","); f.dayparts.value = (rule.dayparts || []).join(" ");
      f.date_from.value = rule.date_from || ""; f.date_until.value = rule.date_until || "";
      f.groups.value = (r.target.groups || []).join(", "); f.priority.value = r.priority;
    },
  };

  function stopEditing(form) {
    editing.delete(form);
    form.reset();
    form.querySelector("[data-editing]").hidden = true;
    form.querySelector("[data-cancel-edit]").hidden = true;
    const submit = form.querySelector("button[type=submit]");
    submit.textContent = submit.dataset.add;
  }

  for (const button of document.querySelectorAll("button[data-edit]")) {
    button.addEventListener("click", () => {
      const form = document.getElementById(button.dataset.edit);
      const record = JSON.parse(button.dataset.record);
      stopEditing(form);
      fill[form.dataset.shape](form, record);
      editing.set(form, record);
      const label = form.querySelector("[data-editing]");
      label.textContent = label.dataset.label.replace("{id}", record.id);
      label.hidden = false;
      form.querySelector("[data-cancel-edit]").hidden = false;
      const submit = form.querySelector("button[type=submit]");
      submit.textContent = submit.dataset.save;
      form.scrollIntoView();
    });
  }
  for (const button of document.querySelectorAll("button[data-cancel-edit]")) {
    button.addEventListener("click", () => stopEditing(button.form));
  }
  for (const button of document.querySelectorAll("button[data-delete]")) {
    button.addEventListener("click", async () => {
      if (!window.confirm(button.dataset.confirm)) return;
      try { await window.unicomm.api("DELETE", button.dataset.delete); location.reload(); }
      catch (failure) { show(false, failure.message); }
    });
  }

  function show(ok, message) {
    status.hidden = !ok; error.hidden = ok;
    (ok ? status : error).textContent = message;
  }

  for (const form of document.querySelectorAll("form[data-api]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const record = editing.get(form);
        const body = await shapes[form.dataset.shape](form);
        if (record) await window.unicomm.api("PUT", `${form.dataset.api}/${record.id}`, body);
        else await window.unicomm.api("POST", form.dataset.api, body);
        location.reload();
      } catch (failure) { show(false, failure.message); }
    });
  }
  for (const button of document.querySelectorAll("button[data-post]")) {
    button.addEventListener("click", async () => {
      try { await window.unicomm.api("POST", button.dataset.post); location.reload(); }
      catch (failure) { show(false, failure.message); }
    });
  }
  const plays = document.getElementById("plays-form");
  plays.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams({ day_from: plays.day_from.value, day_until: plays.day_until.value });
    const response = await fetch("/api/kiosk/plays?" + query, { headers: { Accept: "text/csv" }, credentials: "same-origin" });
    if (!response.ok) { show(false, (await response.json().catch(() => ({}))).error || response.statusText); return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = "kiosk-plays.csv";
    link.click();
  });
})();
