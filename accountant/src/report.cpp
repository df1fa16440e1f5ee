#include "dpgate/accountant/report.h"

#include <algorithm>
#include <map>

#include "text_util.h"

namespace dpgate::accountant {

using internal::Human;
using internal::JsonString;

namespace {

constexpr size_t kLargest = 5;
constexpr size_t kMaxPoints = 1000;

std::string Date(TimePoint t) {
  return FormatIso8601(t).substr(0, 10);
}

std::string Num(double v) {
  return CanonicalDouble(v);
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Granted ε for an analyst budget in the period starting at `start`.
double GrantedFor(const std::vector<GrantRow>& grants, const std::string& analyst,
                  const std::string& dataset, TimePoint start) {
  double sum = 0;
  for (const auto& g : grants) {
    if (g.kind != PrincipalKind::kAnalyst || g.principal != analyst || g.dataset != dataset)
      continue;
    if (!g.period_start || *g.period_start == start) sum += g.epsilon;
  }
  return sum;
}

std::string Svg(const PrincipalReport& p) {
  if (p.series.empty()) return "<p class=\"muted\">No charges in this range.</p>";
  const double w = 720, h = 240, left = 56, right = 12, top = 12, bottom = 28;
  const int64_t t0 = ToMicros(p.series.front().at), t1 = ToMicros(p.series.back().at);
  double ymax = 0;
  for (const auto& s : p.series)
    ymax = std::max({ymax, s.period_cumulative_epsilon, s.budget_epsilon});
  if (ymax <= 0) ymax = 1;
  ymax *= 1.1;
  auto x = [&](TimePoint t) {
    const double span = t1 > t0 ? double(t1 - t0) : 1.0;
    return left + (w - left - right) * (double(ToMicros(t) - t0) / span);
  };
  auto y = [&](double v) { return top + (h - top - bottom) * (1 - v / ymax); };
  auto fmt = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    return std::string(b);
  };
  std::string spend, budget;
  double prev_budget = -1;
  for (const auto& s : p.series) {
    spend += fmt(x(s.at)) + "," + fmt(y(s.period_cumulative_epsilon)) + " ";
    if (prev_budget >= 0 && prev_budget != s.budget_epsilon) {
      budget += fmt(x(s.at)) + "," + fmt(y(prev_budget)) + " ";  // a step, not a slope
    }
    budget += fmt(x(s.at)) + "," + fmt(y(s.budget_epsilon)) + " ";
    prev_budget = s.budget_epsilon;
  }
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt(w) + "\" height=\"" +
                    fmt(h) +
                    "\" role=\"img\" aria-label=\"cumulative ε spent against the budget\">";
  svg += "<rect x=\"" + fmt(left) + "\" y=\"" + fmt(top) + "\" width=\"" + fmt(w - left - right) +
         "\" height=\"" + fmt(h - top - bottom) + "\" fill=\"#fafafa\" stroke=\"#ccc\"/>";
  for (int i = 0; i <= 4; ++i) {
    const double v = ymax * i / 4;
    svg += "<text x=\"" + fmt(left - 4) + "\" y=\"" + fmt(y(v) + 4) +
           "\" text-anchor=\"end\" font-size=\"10\">" + Html(Human(v)) + "</text>";
  }
  svg += "<text x=\"" + fmt(left) + "\" y=\"" + fmt(h - 8) + "\" font-size=\"10\">" +
         Date(p.series.front().at) + "</text><text x=\"" + fmt(w - right) + "\" y=\"" + fmt(h - 8) +
         "\" font-size=\"10\" text-anchor=\"end\">" + Date(p.series.back().at) + "</text>";
  svg +=
      "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-dasharray=\"6 3\" stroke-width=\"1.5\" "
      "points=\"" +
      budget + "\"/>";
  svg += "<polyline fill=\"none\" stroke=\"#2c7fb8\" stroke-width=\"2\" points=\"" + spend + "\"/>";
  svg +=
      "</svg><p class=\"legend\"><span style=\"color:#2c7fb8\">━ ε spent in the budget "
      "period</span> &nbsp; <span style=\"color:#c0392b\">╍ ε budget</span></p>";
  return svg;
}

}  // namespace

Result<LedgerReport> BuildReport(Ledger& ledger, TimePoint since, TimePoint until) {
  auto rows = ledger.Charges(since, until);
  if (!rows.ok()) return rows.error();
  auto grants = ledger.Grants();
  if (!grants.ok()) return grants.error();
  LedgerReport report;
  report.since = since;
  report.until = until;
  report.generated_at = std::chrono::system_clock::now();
  std::map<std::pair<std::string, std::string>, PrincipalReport> by;  // (dataset, analyst)
  std::map<std::pair<std::string, std::string>, std::map<std::string, DailySpend>> days;
  for (const ChargeRow& c : *rows) {
    PrincipalReport& p = by[{c.dataset, c.analyst}];
    p.analyst = c.analyst;
    p.dataset = c.dataset;
    DailySpend& d = days[{c.dataset, c.analyst}][Date(c.at)];
    d.date = Date(c.at);
    if (c.outcome != "charged") {
      ++p.refusals;
      ++d.refusals;
      continue;
    }
    ++p.queries;
    ++d.queries;
    p.epsilon += c.epsilon;
    p.delta += c.delta;
    d.epsilon += c.epsilon;
    d.delta += c.delta;
    p.largest.push_back(c);
    std::sort(p.largest.begin(), p.largest.end(), [](const ChargeRow& a, const ChargeRow& b) {
      return a.epsilon != b.epsilon ? a.epsilon > b.epsilon : a.id < b.id;
    });
    if (p.largest.size() > kLargest) p.largest.pop_back();
    p.series.push_back({c.at, c.id, c.period_cumulative_epsilon,
                        GrantedFor(*grants, c.analyst, c.dataset, c.period_start)});
  }
  for (auto& [key, p] : by) {
    for (auto& [date, d] : days[key]) p.daily.push_back(d);
    if (p.series.size() > kMaxPoints) {
      // Keep an even sample and the last point (the current total).
      std::vector<SpendPoint> thin;
      const double step = double(p.series.size()) / kMaxPoints;
      for (size_t i = 0; i < kMaxPoints; ++i) thin.push_back(p.series[size_t(i * step)]);
      thin.back() = p.series.back();
      p.series = std::move(thin);
    }
    report.principals.push_back(std::move(p));
  }
  return report;
}

std::string RenderReportJson(const LedgerReport& r) {
  std::string out = "{\"since\":\"" + FormatIso8601(r.since) + "\",\"until\":\"" +
                    FormatIso8601(r.until) + "\",\"generated_at\":\"" +
                    FormatIso8601(r.generated_at) + "\",\"principals\":[";
  for (size_t i = 0; i < r.principals.size(); ++i) {
    const auto& p = r.principals[i];
    if (i) out += ",";
    out += "\n{\"analyst\":" + JsonString(p.analyst) + ",\"dataset\":" + JsonString(p.dataset) +
           ",\"queries\":" + std::to_string(p.queries) +
           ",\"refusals\":" + std::to_string(p.refusals) + ",\"epsilon\":" + Num(p.epsilon) +
           ",\"delta\":" + Num(p.delta) + ",\"largest\":[";
    for (size_t j = 0; j < p.largest.size(); ++j) {
      const auto& c = p.largest[j];
      if (j) out += ",";
      out += "{\"id\":" + std::to_string(c.id) + ",\"at\":\"" + FormatIso8601(c.at) +
             "\",\"epsilon\":" + Num(c.epsilon) + ",\"delta\":" + Num(c.delta) +
             ",\"fingerprint\":" + JsonString(c.fingerprint) + "}";
    }
    out += "],\"daily\":[";
    for (size_t j = 0; j < p.daily.size(); ++j) {
      const auto& d = p.daily[j];
      if (j) out += ",";
      out += "{\"date\":\"" + d.date + "\",\"queries\":" + std::to_string(d.queries) +
             ",\"refusals\":" + std::to_string(d.refusals) + ",\"epsilon\":" + Num(d.epsilon) +
             ",\"delta\":" + Num(d.delta) + "}";
    }
    out += "],\"series\":[";
    for (size_t j = 0; j < p.series.size(); ++j) {
      const auto& s = p.series[j];
      if (j) out += ",";
      out += "{\"at\":\"" + FormatIso8601(s.at) + "\",\"id\":" + std::to_string(s.charge_id) +
             ",\"period_cumulative_epsilon\":" + Num(s.period_cumulative_epsilon) +
             ",\"budget_epsilon\":" + Num(s.budget_epsilon) + "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string RenderReportCsv(const LedgerReport& r) {
  std::string out =
      "record,analyst,dataset,date,charge_id,queries,refusals,epsilon,delta,fingerprint\n";
  for (const auto& p : r.principals) {
    const std::string who = CsvField(p.analyst) + "," + CsvField(p.dataset) + ",";
    out += "total," + who + "," + "," + std::to_string(p.queries) + "," +
           std::to_string(p.refusals) + "," + Num(p.epsilon) + "," + Num(p.delta) + ",\n";
    for (const auto& d : p.daily) {
      out += "day," + who + d.date + ",," + std::to_string(d.queries) + "," +
             std::to_string(d.refusals) + "," + Num(d.epsilon) + "," + Num(d.delta) + ",\n";
    }
    for (const auto& c : p.largest) {
      out += "largest," + who + FormatIso8601(c.at) + "," + std::to_string(c.id) + ",,," +
             Num(c.epsilon) + "," + Num(c.delta) + "," + CsvField(c.fingerprint) + "\n";
    }
  }
  return out;
}

std::string RenderReportHtml(const LedgerReport& r) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>dpgate privacy ledger report</title><style>"
      "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
      "table{border-collapse:collapse;margin:.5em 0 1em}"
      "td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
      "th{background:#f3f3f3}td.l,th.l{text-align:left}.muted{color:#888}"
      "section{margin-bottom:2.5em}.legend{font-size:12px}</style></head><body>\n";
  out += "<h1>Privacy ledger report</h1><p>From " + FormatIso8601(r.since) + " to " +
         FormatIso8601(r.until) + " (UTC, end exclusive); generated " +
         FormatIso8601(r.generated_at) + ".</p>\n";
  out +=
      "<table><tr><th class=\"l\">analyst</th><th class=\"l\">dataset</th><th>queries</th>"
      "<th>refusals</th><th>ε spent</th><th>δ spent</th></tr>\n";
  for (const auto& p : r.principals) {
    out += "<tr><td class=\"l\">" + Html(p.analyst) + "</td><td class=\"l\">" + Html(p.dataset) +
           "</td><td>" + std::to_string(p.queries) + "</td><td>" + std::to_string(p.refusals) +
           "</td><td>" + Html(Human(p.epsilon)) + "</td><td>" + Html(Human(p.delta)) +
           "</td></tr>\n";
  }
  out += "</table>\n";
  if (r.principals.empty()) out += "<p class=\"muted\">No charges in this range.</p>\n";
  for (const auto& p : r.principals) {
    out += "<section><h2>" + Html(p.analyst) + " on " + Html(p.dataset) + "</h2>\n" + Svg(p) +
           "\n<h3>Largest charges</h3><table><tr><th>id</th><th class=\"l\">at</th><th>ε</th>"
           "<th>δ</th><th class=\"l\">fingerprint</th></tr>\n";
    for (const auto& c : p.largest) {
      out += "<tr><td>" + std::to_string(c.id) + "</td><td class=\"l\">" + FormatIso8601(c.at) +
             "</td><td>" + Html(Human(c.epsilon)) + "</td><td>" + Html(Human(c.delta)) +
             "</td><td class=\"l\">" + Html(c.fingerprint) + "</td></tr>\n";
    }
    out +=
        "</table><h3>By day</h3><table><tr><th class=\"l\">date</th><th>queries</th>"
        "<th>refusals</th><th>ε</th><th>δ</th></tr>\n";
    for (const auto& d : p.daily) {
      out += "<tr><td class=\"l\">" + d.date + "</td><td>" + std::to_string(d.queries) +
             "</td><td>" + std::to_string(d.refusals) + "</td><td>" + Html(Human(d.epsilon)) +
             "</td><td>" + Html(Human(d.delta)) + "</td></tr>\n";
    }
    out += "</table></section>\n";
  }
  out += "</body></html>\n";
  return out;
}

}  // namespace dpgate::accountant
