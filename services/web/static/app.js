// Deskmail admin: small conveniences on top of forms that work without JavaScript.
// Loaded from /static (the Content-Security-Policy forbids inline script).
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // Port placeholder and hint follow the account type and security (blank port = usual port; Maildir: none).
  function wirePort() {
    var port = document.getElementById("port");
    var type = document.getElementById("account_type");
    var security = document.getElementById("security");
    if (!port || !type || !security) return;
    var ports = JSON.parse(port.dataset.defaultPorts || "{}");
    var hint = document.getElementById("port-hint");
    function update() {
      var usual = ports[type.value + "/" + security.value];
      port.placeholder = usual ? String(usual) : "";
      if (hint) hint.textContent = usual ? "blank: the usual port (" + usual + ")" : hint.dataset.maildir;
      var archive = document.getElementById("archive-options");
      if (archive) archive.classList.toggle("hidden", type.value !== "imap" && type.value !== "maildir");
    }
    type.addEventListener("change", update);
    security.addEventListener("change", update);
    update();
  }

  // The SMTP section's fields show the settings the page was drawn with (data-fields-for): shown for
  // them, and for "custom" (a copy of shared settings, or the mailbox's own); hidden for anything else,
  // whose settings are not on the page. The note about shared settings only while they are chosen.
  function wireSmtp() {
    var choice = document.getElementById("smtp_id");
    var custom = document.getElementById("smtp-custom");
    if (!choice || !custom) return;
    var drawnFor = choice.dataset.fieldsFor || "";
    var shared = document.getElementById("smtp-shared");
    function update() {
      var drawn = drawnFor !== "" && choice.value === drawnFor;
      custom.classList.toggle("hidden", choice.value !== "custom" && !drawn);
      if (shared) shared.classList.toggle("hidden", !drawn);
    }
    choice.addEventListener("change", update);
    update();
  }

  // data-show-if="control_id=value1|value2": shown only while that control holds one of the values
  // (the sign-in method's password or OAuth2 fields, the provider's tenant or URLs, the pasted token).
  // Hidden fields are still sent; the server ignores what the choices make irrelevant.
  function wireShowIf() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-show-if]"), function (node) {
      var rule = node.getAttribute("data-show-if").split("=");
      var control = document.getElementById(rule[0]);
      if (!control) return;
      var wanted = rule[1].split("|");
      function update() { node.classList.toggle("hidden", wanted.indexOf(control.value) < 0); }
      control.addEventListener("change", update);
      update();
    });
  }

  // Live preview of the From name's placeholders (the server renders it in the sandbox).
  function wireFromPreview() {
    var input = document.getElementById("from_name");
    var out = document.getElementById("from-preview");
    if (!input || !out) return;
    var timer = null;
    function show(data) {
      out.textContent = "";
      if (data.error) {
        var span = document.createElement("span");
        span.className = "field-error";
        span.textContent = data.error;
        out.appendChild(span);
        return;
      }
      var parts = [["Staff replies: ", data.staff_reply], ["; auto-replies: ", data.auto_reply]];
      parts.forEach(function (p) {
        out.appendChild(document.createTextNode(p[0]));
        var b = document.createElement("b");
        b.textContent = p[1];
        out.appendChild(b);
      });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        fetch("/api/v1/preview/from-name", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
          body: JSON.stringify({ from_name: input.value })
        }).then(function (r) { return r.json(); }).then(show).catch(function () {});
      }, 250);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wirePort();
    wireSmtp();
    wireShowIf();
    wireFromPreview();
  });
})();
