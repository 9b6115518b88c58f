// The page's configuration and every request it makes (with the CSRF header).

const config = JSON.parse(document.getElementById("tf-config").textContent);

export { config };

const session = { csrf: "", username: null, role: "admin", auth: false, mode: "open" };
export { session };

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

/** Call the task API below config.base: api("POST", "/bulk-retry", {task_ids}). */
export async function api(method, route, body, params) {
  const url = new URL(config.base + route, window.location.origin);
  if (params) appendParams(url.searchParams, params);
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRF-Token": session.csrf },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401 && session.auth) {
    window.location.assign(`${config.base}/auth/login`);
  }
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, detailOf(data));
  return { data, headers: response.headers };
}

export function appendParams(search, params) {
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(name, v));
    else search.set(name, String(value));
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (e) {
    return null;
  }
}

function detailOf(data) {
  if (!data) return "";
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
  return "";
}

/**
 * Who the dashboard runs as, and the CSRF token to send (GET {base}/auth/session).
 * mode "session": a login form and Sign out; "dependency": the app's own auth; "open": none.
 */
export async function loadSession() {
  try {
    const { data } = await api("GET", "/auth/session");
    session.mode = data.mode || "open";
    session.auth = session.mode === "session";
    session.csrf = data.csrf_token || "";
    session.username = data.username || null;
    session.role = data.role || "viewer";
  } catch (e) {
    if (e.status === 401) window.location.assign(`${config.base}/auth/login`);
    session.mode = "open"; // an older server without the session route
  }
  return session;
}

/** After the stream failed: a session that expired sends the browser to the login form. */
export function checkSession() {
  if (session.auth) api("GET", "/auth/session").catch(() => {});
}

export async function logout() {
  try {
    await api("POST", "/auth/logout");
  } catch (e) {
    /* the session is gone either way */
  }
  window.location.assign(`${config.base}/auth/login`);
}
