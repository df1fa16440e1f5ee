// Compliance reports over the ledger (`dpgate ledger report`): per analyst and
// dataset, spend over time, number of queries, largest charges and refusals.
// Reports show fingerprints and amounts, never SQL results.
#pragma once

#include <string>
#include <vector>

#include "dpgate/accountant/ledger.h"

namespace dpgate::accountant {

struct SpendPoint {
  TimePoint at;
  int64_t charge_id = 0;
  double period_cumulative_epsilon = 0;  // since the start of this budget period
  double budget_epsilon = 0;             // granted for that period
};

struct DailySpend {
  std::string date;  // YYYY-MM-DD (UTC)
  int64_t queries = 0;
  int64_t refusals = 0;
  double epsilon = 0;
  double delta = 0;
};

struct PrincipalReport {
  std::string analyst;
  std::string dataset;
  int64_t queries = 0;   // charged
  int64_t refusals = 0;  // refused attempts
  double epsilon = 0;    // charged in the range
  double delta = 0;
  std::vector<ChargeRow> largest;  // up to 5, by ε
  std::vector<DailySpend> daily;
  std::vector<SpendPoint> series;  // at most ~1000 points (evenly thinned)
};

struct LedgerReport {
  TimePoint since;
  TimePoint until;
  TimePoint generated_at;
  std::vector<PrincipalReport> principals;  // ordered by dataset, analyst
};

Result<LedgerReport> BuildReport(Ledger& ledger, TimePoint since, TimePoint until);

std::string RenderReportJson(const LedgerReport& report);
// Long format, one table: record = total | day | largest.
std::string RenderReportCsv(const LedgerReport& report);
// One self-contained HTML file (inline CSS and SVG, no external assets).
std::string RenderReportHtml(const LedgerReport& report);

}  // namespace dpgate::accountant
