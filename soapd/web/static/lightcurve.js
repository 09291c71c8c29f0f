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
  var GCN_FORM = "https://gcn.nasa.gov/circulars/new?";
  // A trace with more points than this is drawn with WebGL (scattergl) when the browser
  // has it, if its marker exists there (circles and squares: detections); limits keep
  // their SVG arrows. Every point is drawn either way (nothing is thinned out).
  var GL_MIN_POINTS = 2000;
  var GL_SYMBOLS = ["circle", "square-open"];
  var webgl = null;

  function hasWebGL() {
    if (webgl === null) {
      try {
        var canvas = document.createElement("canvas");
        webgl = !!(canvas.getContext("webgl") || canvas.getContext("experimental-webgl"));
      } catch (e) {
        webgl = false;
      }
    }
    return webgl;
  }

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

  function memberList(ids) {
    // At most 12 frame ids in a hover label; the table lists them all.
    var shown = ids.slice(0, 12).map(function (f) { return esc(f); }).join(", ");
    return ids.length > 12 ? shown + " … (" + ids.length + " frames)" : shown;
  }

  function stackHover(p, i, words, value) {
    var excluded = p.excluded[i] || {};
    var left = Object.keys(excluded).map(function (why) {
      return excluded[why].length + " (" + esc(why) + ")";
    });
    return [
      "<b>" + esc(p.band[i]) + " stacked epoch</b> " + value,
      esc(p.n_frames[i]) + " x " + fmt(p.exptime_s[i], 0) + " s (" +
        fmt(p.total_exptime_s[i], 0) + " s in all) · " + esc(p.telescope[i]),
      "member frames: " + memberList(p.member_frame_ids[i]),
      (left.length ? "left out: " + left.join("; ") : "no frame left out"),
      "limit " + fmt(p.lim_mag[i], 2) + " mag (" + fmt(p.lim_nsigma[i], 0) + "σ)" +
        (p.is_detection[i] ? ", S/N " + fmt(p.snr[i], 1) : ""),
      "weighted mean mid-time " + esc(p.mid_time_utc[i]),
      "zero point " + fmt(p.zp_mag[i], 3) + " (" + esc(p.mag_system[i] || "none") + ")",
      "flags: " + words,
    ].join("<br>");
  }

  function hover(p, i) {
    var words = p.flag_words[i].length ? p.flag_words[i].map(esc).join("<br>") : "none";
    var value = p.is_detection[i] && p.mag[i] !== null
      ? fmt(p.mag[i], 3) + " ± " + fmt(p.mag_err[i], 3) + " mag"
      : "> " + fmt(p.lim_mag[i], 2) + " mag (" + fmt(p.lim_nsigma[i], 0) + "σ limit)";
    if (p.stacked[i]) return stackHover(p, i, words, value);
    return [
      "<b>" + esc(p.band[i]) + "</b> " + value,
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
    var stacksBox = document.getElementById("show-stacks");
    var showStacks = stacksBox ? stacksBox.checked : true;
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
      if (p.stacked[i] && !showStacks) continue;
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
      // Stacked epochs: larger open markers with a thick outline (square for a detection,
      // an open down arrow for a limit), drawn above the single frames.
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
          size: stacked ? 15 : (limit ? 11 : 8),
          symbol: limit ? (stacked ? "arrow-bar-down-open" : "arrow-bar-down") : (stacked ? "square-open" : "circle"),
          line: { width: stacked ? 2.5 : (limit ? 1.5 : 0.5), color: stacked || limit ? colour : "#222" },
        },
      };
      if (!limit) {
        trace.error_y = { type: "data", array: g.err, visible: true, color: colour, thickness: 1.2, width: 3 };
      }
      return trace;
    });
    var renderers = {};
    traces.forEach(function (t) {
      if (t.x.length > GL_MIN_POINTS && GL_SYMBOLS.indexOf(t.marker.symbol) >= 0 && hasWebGL()) {
        t.type = "scattergl";
      }
      renderers[t.type === "scattergl" ? "webgl" : "svg"] = true;
    });
    el.setAttribute("data-renderer", Object.keys(renderers).sort().join("+") || "svg");
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
        "Hover a point for its frame, exposure, flags and zero point; click it to open the frame. " +
        "Stacked epochs (large open markers) show N x S, their member frames and their limit.";
    }
    el.setAttribute("data-state", "drawing");
    return window.Plotly.react(el, traces, layout, { displaylogo: false, responsive: true })
      .then(function () {
        // For bench/bench_web.py: when the plot is drawn (ms since navigation start).
        if (window.performance && performance.mark) performance.mark("soapd-plot-drawn");
        el.setAttribute("data-state", "ready");
        el.setAttribute("data-time", time);
        el.setAttribute("data-units", units);
      });
  }

  // The JSON is requested as soon as this script runs (before Plotly's 4.6 MB script has
  // been parsed: this file comes first in the page), and drawn once the page is ready.
  function request() {
    return fetch(el.getAttribute("data-url"), { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (json) {
        if (window.performance && performance.mark) performance.mark("soapd-data-loaded");
        return json;
      });
  }

  function load(pending) {
    pending
      .then(function (json) {
        data = json;
        return build();
      })
      .then(function () {
        el.on("plotly_click", function (ev) {
          var id = ev.points && ev.points.length ? ev.points[0].customdata : null;
          if (id !== null && id !== undefined) {  // a stacked epoch has no single frame
            window.location.href = "/frames/" + encodeURIComponent(id);
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
        if (r.ok) return r.json();
        return r.json().then(
          function (body) { throw new Error(body.error || "HTTP " + r.status); },
          function () { throw new Error("HTTP " + r.status); }
        );
      })
      .then(function (json) {
        pre.textContent = json.text;
        pre.setAttribute("data-stacked", json.stacked ? "yes" : "no");
        var warnings = document.getElementById("gcn-warnings");
        if (warnings && json.warnings && json.warnings.length) {
          json.warnings.forEach(function (w) {
            var li = document.createElement("li");
            li.textContent = w;
            warnings.appendChild(li);
          });
          warnings.hidden = false;
        }
        var note = document.getElementById("gcn-note");
        if (note && !json.stacked) {
          note.textContent = "No stacked epoch is stored yet: the rows combine the single " +
            "frames' photometry per epoch (the text says so). Review it; soapd never submits it.";
        }
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
        // Only GCN's own form: the server builds the link, this is a second check.
        if (json.submission_url && link &&
            json.submission_url.indexOf(GCN_FORM) === 0) {
          link.href = json.submission_url;
          link.hidden = false;
        }
      })
      .catch(function (err) {
        pre.textContent = "The circular draft could not be made: " + err.message;
      });
  }

  var pending = el && form ? request() : null;
  if (pending) pending.catch(function () {});  // reported by load()
  document.addEventListener("DOMContentLoaded", function () {
    if (pending) {
      form.addEventListener("change", function () { if (data) build(); });
      load(pending);
    }
    loadGcn();
  });
})();
