// podtail's status page: refreshes its main part in place every few
// seconds (the server renders it: /status?part=main), and applies the
// filter as soon as a choice changes, keeping it in the address bar so the
// view can be shared or reloaded. Works with no other file than this one.
(function () {
  "use strict";
  var form = document.getElementById("filter");
  var main = document.getElementById("main");
  var tenant = document.getElementById("f-tenant");
  var app = document.getElementById("f-app");
  var auto = document.getElementById("auto");
  var updated = document.getElementById("updated");
  var every = parseInt(updated.getAttribute("data-refresh-ms"), 10) || 2000;
  var busy = false, again = false, timer = null, failures = 0;
  document.getElementById("f-apply").style.display = "none"; // changes apply at once

  function query() {
    var q = new URLSearchParams();
    if (tenant.value) q.set("tenant", tenant.value);
    if (app.value) q.set("app", app.value);
    return q;
  }

  // options replaces a select's choices with those of the page just
  // fetched (a new tenant or application appears), keeping the choice.
  function options(sel, values, label) {
    var keep = sel.value;
    var o = document.createElement("option");
    o.value = ""; o.textContent = label;
    sel.replaceChildren(o);
    values.forEach(function (v) {
      var x = document.createElement("option");
      x.value = v; x.textContent = v; x.selected = v === keep;
      sel.appendChild(x);
    });
  }

  function refresh() {
    if (busy) { again = true; return; } // once this one is in
    busy = true;
    var q = query();
    q.set("part", "main");
    fetch("status?" + q.toString(), { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      main.innerHTML = html;
      failures = 0;
      updated.textContent = "updated " + new Date().toLocaleTimeString();
      updated.removeAttribute("data-error");
      return fetch("status.json", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (all) {
        var ts = {}, as = {};
        (all.tenants || []).forEach(function (t) { ts[t.tenant] = 1; });
        (all.sources || []).forEach(function (s) {
          ts[s.tenant] = 1;
          if (!tenant.value || s.tenant === tenant.value) { if (s.application) as[s.application] = 1; }
        });
        if (tenant.value) ts[tenant.value] = 1;
        if (app.value) as[app.value] = 1;
        options(tenant, Object.keys(ts).sort(), "all tenants");
        options(app, Object.keys(as).sort(), "all applications");
      });
    }).catch(function (e) {
      failures++;
      updated.textContent = "podtail did not answer (" + e.message + "); retrying";
      updated.setAttribute("data-error", "1");
    }).finally(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  function schedule() {
    clearInterval(timer);
    if (auto.checked) timer = setInterval(refresh, every);
  }

  function apply() {
    var q = query().toString();
    history.replaceState(null, "", "status" + (q ? "?" + q : ""));
    refresh();
  }

  tenant.addEventListener("change", function () { app.value = ""; apply(); });
  app.addEventListener("change", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
  auto.addEventListener("change", schedule);
  updated.textContent = "updated " + new Date().toLocaleTimeString();
  schedule();
})();
