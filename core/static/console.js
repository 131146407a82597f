// Console forms posted by script carry the session's CSRF token in a header.
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  window.unicomm = {
    csrfToken: meta ? meta.content : "",
    async api(method, path, body) {
      const response = await fetch(path, {
        method,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrfToken },
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error || response.statusText);
      return data;
    },
  };
})();
