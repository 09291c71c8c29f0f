// soapd web: the interactive lightcurve (Plotly, served by soapd) and the GCN draft's copy button.
//
// Data: GET <data-url> (the /api/targets/{name}/lightcurve JSON). One trace per band and
// kind (detections with error bars, limits as downward arrows starting at the limit,
// stacked epochs with their own marker). Every string from the server is escaped before
// Plotly sees it: Plotly renders a subset of HTML in hover labels and titles.
(function () {
  "use strict";

  var el = document.getElementById("lightcurve");
  var form = document.getElementById("controls");
  var EXTRA = ["#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#8c564b"];
  var data = null;

  function esc(s) {
    return String(s === null || s === undefined ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "-" : Number(v).toFixed(digits);
  }

  function choice(name) {
    var checked = form.querySelector("input[name=" + name + "]:checked");
    return checked ? checked.value : null;
  }

  function colourOf(band, i) {
    var colours = JSON.parse(el.getAttribute("data-colours") || "{}");
    return colours[band] || EXTRA[i % EXTRA.length];
  }

  function hover(p, i) {
    var words = p.flag_words[i].length ? p.flag_words[i].map(esc).join("<br>") : "none";
    var value = p.is_detection[i] && p.mag[i] !== null
      ? fmt(p.mag[i], 3) + " ± " + fmt(p.mag_err[i], 3) + " mag"
      : "> " + fmt(p.lim_mag[i], 2) + " mag (" + fmt(p.lim_nsigma[i], 0) + "σ limit)";
    return [
      "<b>" + esc(p.band[i]) + "</b> " + value + (p.stacked[i] ? " (stacked)" : ""),
      "flux " + fmt(p.flux_ujy[i], 2) + " ± " + fmt(p.flux_ujy_err[i], 2) + " µJy, S/N " + fmt(p.snr[i], 1),
      "frame " + p.frame_id[i] + " · " + esc(p.image_file[i]),
      esc(p.mid_time_utc[i]) + " · " + esc(p.telescope[i]) + " · " + fmt(p.exptime_s[i], 1) + " s",
      "zero point " + fmt(p.zp_mag[i], 3) + " (" + esc(p.mag_system[i] || "none") + ", " +
        (p.n_cal_stars[i] >= 0 ? p.n_cal_stars[i] : "?") + " stars)",
      "flags: " + words,
    ].join("<br>");
  }

  function xOf(p, i, time, hasTrigger) {
    if (time === "log" || hasTrigger) return p.t_since_trigger_h[i];
    return p.mid_time_utc[i].replace("T", " ").replace("Z", "").slice(0, 23);
  }

  function build() {
    var p = data.points;
    var units = choice("units");
    var time = choice("time");
    var showLimits = document.getElementById("show-limits").checked;
    var hasTrigger = el.getAttribute("data-has-trigger") === "yes";
    var groups = {};
    var order = [];
    var dropped = 0;
    for (var i = 0; i < p.mjd.length; i++) {
      var x = xOf(p, i, time, hasTrigger);
      if (x === null || (time === "log" && !(x > 0))) { dropped++; continue; }
      var det = p.is_detection[i] && p.mag[i] !== null;
      var y, err = null;
      if (units === "flux") {
        y = det ? p.flux_ujy[i] : p.lim_flux_ujy[i];
        err = det ? p.flux_ujy_err[i] : null;
      } else {
        y = det ? p.mag[i] : p.lim_mag[i];
        err = det ? p.mag_err[i] : null;
      }
      if (y === null) { dropped++; continue; }
      var kind = (p.stacked[i] ? "stacked " : "") + (det ? "detection" : "limit");
      var key = p.band[i] + "|" + kind;
      if (!groups[key]) {
        groups[key] = { band: p.band[i], kind: kind, x: [], y: [], err: [], text: [], ids: [] };
        order.push(key);
      }
      var g = groups[key];
      g.x.push(x); g.y.push(y); g.err.push(err); g.text.push(hover(p, i)); g.ids.push(p.frame_id[i]);
    }
    var bands = [];
    order.forEach(function (k) { if (bands.indexOf(groups[k].band) < 0) bands.push(groups[k].band); });
    var traces = order.map(function (k) {
      var g = groups[k];
      var colour = colourOf(g.band, bands.indexOf(g.band));
      var limit = g.kind.indexOf("limit") >= 0;
      var stacked = g.kind.indexOf("stacked") === 0;
      var trace = {
        type: "scatter",
        mode: "markers",
        name: esc(g.band || "?") + " " + g.kind + "s",
        legendgroup: g.band,
        x: g.x,
        y: g.y,
        customdata: g.ids,
        text: g.text,
        hovertemplate: "%{text}<extra></extra>",
        meta: { kind: g.kind, band: g.band },
        visible: limit && !showLimits ? false : true,
        marker: {
          color: colour,
          size: stacked ? 12 : (limit ? 11 : 8),
          symbol: limit ? (stacked ? "arrow-bar-down-open" : "arrow-bar-down") : (stacked ? "diamond" : "circle"),
          line: { width: limit ? 1.5 : 0.5, color: limit ? colour : "#222" },
        },
      };
      if (!limit) {
        trace.error_y = { type: "data", array: g.err, visible: true, color: colour, thickness: 1.2, width: 3 };
      }
      return trace;
    });
    var xTitle = time === "log" ? "t − T0 (h, log)" : (hasTrigger ? "t − T0 (h)" : "mid-exposure (UTC)");
    var layout = {
      uirevision: units + "|" + time,
      margin: { l: 64, r: 16, t: 16, b: 56 },
      hovermode: "closest",
      showlegend: true,
      legend: { orientation: "h", y: -0.2 },
      xaxis: {
        title: { text: xTitle },
        type: time === "log" ? "log" : (hasTrigger ? "linear" : "date"),
        zeroline: false,
      },
      yaxis: {
        title: { text: units === "flux" ? "flux density (µJy, AB)" : "magnitude" },
        autorange: units === "flux" ? true : "reversed",
        zeroline: units === "flux",
      },
    };
    var note = document.getElementById("plot-note");
    if (note) {
      note.textContent = (dropped ? dropped + " point(s) not drawn (" +
        (time === "log" ? "before the trigger or " : "") + "no value). " : "") +
        "Hover a point for its frame, exposure, flags and zero point; click it to open the frame.";
    }
    el.setAttribute("data-state", "drawing");
    return window.Plotly.react(el, traces, layout, { displaylogo: false, responsive: true })
      .then(function () {
        el.setAttribute("data-state", "ready");
        el.setAttribute("data-time", time);
        el.setAttribute("data-units", units);
      });
  }

  function load() {
    fetch(el.getAttribute("data-url"), { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (json) {
        data = json;
        return build();
      })
      .then(function () {
        el.on("plotly_click", function (ev) {
          if (ev.points && ev.points.length) {
            window.location.href = "/frames/" + encodeURIComponent(ev.points[0].customdata);
          }
        });
      })
      .catch(function (err) {
        el.setAttribute("data-state", "error");
        el.textContent = "The lightcurve could not be loaded: " + err.message;
      });
  }

  // ------------------------------------------------------------------ GCN draft
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http:// on a LAN is not a secure context: fall back to a selection copy.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) resolve(); else reject(new Error("the browser refused to copy"));
    });
  }

  function loadGcn() {
    var pre = document.getElementById("gcn-draft");
    var button = document.getElementById("copy-gcn");
    var status = document.getElementById("copy-status");
    if (!pre) return;
    fetch(pre.getAttribute("data-url"), { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (json) {
        pre.textContent = json.text;
        pre.setAttribute("data-state", "ready");
        button.disabled = false;
        button.addEventListener("click", function () {
          copyText(json.text).then(function () {
            status.textContent = "copied";
          }, function (err) {
            status.textContent = "not copied: " + err.message + " (select the text instead)";
          });
        });
        var link = document.getElementById("gcn-submit");
        if (json.submission_url && link) {
          link.href = json.submission_url;
          link.hidden = false;
        }
      })
      .catch(function (err) {
        pre.textContent = "The circular draft could not be made: " + err.message;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (el && form) {
      form.addEventListener("change", function () { if (data) build(); });
      load();
    }
    loadGcn();
  });
})();
